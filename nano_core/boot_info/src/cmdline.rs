//! The kernel command line: whitespace-separated `key=value` options or bare `flag`s.

/// One option: `key=value`, or a bare `key` with an empty value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Opt<'a> {
    /// The part before `=`.
    pub key: &'a str,
    /// The part after the first `=`, or `""`.
    pub value: &'a str,
}

/// Iterates over the options of `cmdline`.
pub fn options(cmdline: &str) -> impl Iterator<Item = Opt<'_>> {
    cmdline.split_ascii_whitespace().map(|word| match word.split_once('=') {
        Some((key, value)) => Opt { key, value },
        None => Opt { key: word, value: "" },
    })
}

/// The value of the last occurrence of `key`, if present (later options override earlier ones).
pub fn get<'a>(cmdline: &'a str, key: &str) -> Option<&'a str> {
    options(cmdline).filter(|o| o.key == key).last().map(|o| o.value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options() {
        let c = "  test log=debug fault=pf  log=trace a=b=c ";
        let v: Vec<_> = options(c).collect();
        assert_eq!(v.len(), 5);
        assert_eq!(v[0], Opt { key: "test", value: "" });
        assert_eq!(get(c, "log"), Some("trace"));
        assert_eq!(get(c, "a"), Some("b=c"));
        assert_eq!(get(c, "test"), Some(""));
        assert_eq!(get(c, "missing"), None);
        assert_eq!(options("").count(), 0);
    }
}
