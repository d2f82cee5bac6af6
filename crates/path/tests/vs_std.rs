//! Runs one table of cases through this crate and through `std::path` and requires the same
//! answers: components, parent, file_name/stem/extension, is_absolute, join, push/pop,
//! with_extension/with_file_name, starts_with/ends_with/strip_prefix, equality.

use std::path as sp;

const PATHS: &[&str] = &[
    "",
    "/",
    "//",
    "///",
    ".",
    "..",
    "./",
    "../",
    "/.",
    "/..",
    "./.",
    "././",
    "a",
    "a/",
    "a//",
    "/a",
    "//a",
    "/a/",
    "a/b",
    "a//b",
    "a/./b",
    "a/../b",
    "./a",
    "../a",
    "a/.",
    "a/..",
    "/a/b/c",
    "/a/b/c/",
    "a/b/c.txt",
    "a/b/.hidden",
    ".hidden",
    "..hidden",
    "a.b.c",
    "a.",
    "/a.b/c",
    "/a.b/c.d/",
    "foo.tar.gz",
    "dir/foo.tar.gz",
    "./foo",
    ".././..",
    "a/b/../../c",
    "/namespaces/kernel/core-1234.o",
    "/namespaces/applications/",
    "x/y/z/",
    "/x/./y/",
    "a b/c d.e",
    "ü/ñ.ö",
    "...",
    "a/...",
    ".../a",
];

const EXTS: &[&str] = &["", "txt", "tar.gz", ".", "o"];
const NAMES: &[&str] = &["n", "n.txt", ".n", ""];

fn comps_ours(p: &str) -> Vec<String> {
    path::Path::new(p).components().map(|c| format!("{c:?}")).collect()
}

fn comps_std(p: &str) -> Vec<String> {
    sp::Path::new(p)
        .components()
        .map(|c| match c {
            sp::Component::RootDir => "RootDir".to_string(),
            sp::Component::CurDir => "CurDir".to_string(),
            sp::Component::ParentDir => "ParentDir".to_string(),
            sp::Component::Normal(n) => format!("Normal({:?})", n.to_str().unwrap()),
            sp::Component::Prefix(_) => unreachable!("no prefixes on Unix"),
        })
        .collect()
}

fn s(o: Option<&std::ffi::OsStr>) -> Option<String> {
    o.map(|x| x.to_str().unwrap().to_string())
}

#[test]
fn same_answers_as_std() {
    let mut cases = 0;
    let mut failures = Vec::new();
    let mut check = |what: String, ours: String, theirs: String| {
        cases += 1;
        if ours != theirs {
            failures.push(format!("{what}: ours {ours}, std {theirs}"));
        }
    };
    for &p in PATHS {
        let (o, t) = (path::Path::new(p), sp::Path::new(p));
        check(format!("components({p:?})"), format!("{:?}", comps_ours(p)), format!("{:?}", comps_std(p)));
        let ours_rev: Vec<String> = o.components().rev().map(|c| c.as_os_str().to_string()).collect();
        let std_rev: Vec<String> = t.components().rev().map(|c| c.as_os_str().to_str().unwrap().to_string()).collect();
        check(format!("components({p:?}).rev()"), format!("{ours_rev:?}"), format!("{std_rev:?}"));
        check(
            format!("parent({p:?})"),
            format!("{:?}", o.parent().map(|x| x.as_os_str())),
            format!("{:?}", t.parent().map(|x| x.to_str().unwrap())),
        );
        check(format!("file_name({p:?})"), format!("{:?}", o.file_name()), format!("{:?}", s(t.file_name())));
        check(format!("file_stem({p:?})"), format!("{:?}", o.file_stem()), format!("{:?}", s(t.file_stem())));
        check(format!("extension({p:?})"), format!("{:?}", o.extension()), format!("{:?}", s(t.extension())));
        check(format!("is_absolute({p:?})"), format!("{}", o.is_absolute()), format!("{}", t.is_absolute()));
        check(format!("has_root({p:?})"), format!("{}", o.has_root()), format!("{}", t.has_root()));
        let anc_o: Vec<&str> = o.ancestors().map(|a| a.as_os_str()).collect();
        let anc_t: Vec<&str> = t.ancestors().map(|a| a.to_str().unwrap()).collect();
        check(format!("ancestors({p:?})"), format!("{anc_o:?}"), format!("{anc_t:?}"));
        let (mut po, mut pt) = (o.to_path_buf(), t.to_path_buf());
        let (ro, rt) = (po.pop(), pt.pop());
        check(format!("pop({p:?})"), format!("{ro} {:?}", po.as_os_str()), format!("{rt} {:?}", pt.to_str().unwrap()));
        for &e in EXTS {
            check(
                format!("with_extension({p:?}, {e:?})"),
                format!("{:?}", o.with_extension(e).as_os_str()),
                format!("{:?}", t.with_extension(e).to_str().unwrap()),
            );
        }
        for &n in NAMES {
            check(
                format!("with_file_name({p:?}, {n:?})"),
                format!("{:?}", o.with_file_name(n).as_os_str()),
                format!("{:?}", t.with_file_name(n).to_str().unwrap()),
            );
        }
        for &q in PATHS.iter().step_by(3) {
            let (oq, tq) = (path::Path::new(q), sp::Path::new(q));
            check(format!("join({p:?}, {q:?})"), format!("{:?}", o.join(q).as_os_str()), format!("{:?}", t.join(q).to_str().unwrap()));
            check(format!("starts_with({p:?}, {q:?})"), format!("{}", o.starts_with(q)), format!("{}", t.starts_with(q)));
            check(format!("ends_with({p:?}, {q:?})"), format!("{}", o.ends_with(q)), format!("{}", t.ends_with(q)));
            check(
                format!("strip_prefix({p:?}, {q:?})"),
                format!("{:?}", o.strip_prefix(q).ok().map(|x| x.as_os_str())),
                format!("{:?}", t.strip_prefix(q).ok().map(|x| x.to_str().unwrap())),
            );
            check(format!("eq({p:?}, {q:?})"), format!("{}", o == oq), format!("{}", t == tq));
            check(format!("cmp({p:?}, {q:?})"), format!("{:?}", o.cmp(oq)), format!("{:?}", t.cmp(tq)));
        }
    }
    println!("path: {cases} cases compared with std::path, {} differ", failures.len());
    assert!(failures.is_empty(), "{} of {cases} cases differ from std:\n{}", failures.len(), failures.join("\n"));
    assert!(cases > 1000);
}

#[test]
fn owned_api_and_conversions() {
    use path::{Path, PathBuf};
    use std::borrow::Borrow;
    let mut b = PathBuf::from("/namespaces");
    b.push("kernel");
    b.push("core.o");
    assert_eq!(b.as_os_str(), "/namespaces/kernel/core.o");
    assert!(b.set_extension("txt"));
    assert_eq!(b.display().to_string(), "/namespaces/kernel/core.txt");
    let p: &Path = b.borrow();
    assert_eq!(p.file_name(), Some("core.txt"));
    let collected: PathBuf = ["a", "b", "/c", "d"].iter().collect();
    assert_eq!(collected.as_os_str(), "/c/d");
    assert_eq!(Path::new("a//b"), Path::new("a/b"));
    assert_eq!(String::from(PathBuf::from("x/y")), "x/y");
    assert_eq!(Path::new("/a/b").strip_prefix("/c").unwrap_err().to_string(), "prefix not found");
    let boxed = PathBuf::from("boxed/path").into_boxed_path();
    assert_eq!(boxed.file_name(), Some("path"));
    assert_eq!(Path::new("/a/b").iter().collect::<Vec<_>>(), ["/", "a", "b"]);
}
