//! path: `Path` and `PathBuf` with the API of `std::path`, for code moved from std.
//!
//! Unix semantics (`/` is the only separator, no prefixes), and `OsStr = str`,
//! `OsString = String`: kernel paths are UTF-8. The component parser follows std's algorithm
//! (the same states and trimming rules), so that `components`, `parent`, `file_name`,
//! `file_stem`, `extension`, `push`, `pop`, `starts_with`, `strip_prefix`... give std's answers;
//! a host test runs one table of cases through both and requires the same results.
//! The kernel addresses its namespaces and their object directories with these paths.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_op_in_unsafe_fn)]

extern crate alloc;

use alloc::borrow::{Cow, ToOwned};
use alloc::boxed::Box;
use alloc::string::String;
use core::borrow::Borrow;
use core::cmp::Ordering;
use core::fmt;
use core::ops::Deref;

/// The kernel's `OsStr`: paths are UTF-8.
pub type OsStr = str;
/// The kernel's `OsString`.
pub type OsString = String;

/// The path separator.
pub const MAIN_SEPARATOR: char = '/';
/// The path separator as a string.
pub const MAIN_SEPARATOR_STR: &str = "/";

fn is_sep(b: u8) -> bool {
    b == b'/'
}

/// One component of a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component<'a> {
    /// The root directory `/`.
    RootDir,
    /// `.` at the start of a relative path.
    CurDir,
    /// `..`.
    ParentDir,
    /// A normal name.
    Normal(&'a OsStr),
}

impl<'a> Component<'a> {
    /// The component as a string slice.
    pub fn as_os_str(self) -> &'a OsStr {
        match self {
            Component::RootDir => MAIN_SEPARATOR_STR,
            Component::CurDir => ".",
            Component::ParentDir => "..",
            Component::Normal(p) => p,
        }
    }
}

impl AsRef<Path> for Component<'_> {
    fn as_ref(&self) -> &Path {
        Path::new(self.as_os_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum State {
    Prefix = 0,
    StartDir = 1,
    Body = 2,
    Done = 3,
}

/// Iterator over a path's components (double-ended), as `std::path::Components`.
#[derive(Clone)]
pub struct Components<'a> {
    path: &'a str,
    has_root: bool,
    front: State,
    back: State,
}

impl<'a> Components<'a> {
    fn new(path: &'a str) -> Components<'a> {
        Components { path, has_root: path.as_bytes().first().is_some_and(|&b| is_sep(b)), front: State::Prefix, back: State::Body }
    }

    fn include_cur_dir(&self) -> bool {
        if self.has_root {
            return false;
        }
        let b = self.path.as_bytes();
        match (b.first(), b.get(1)) {
            (Some(b'.'), None) => true,
            (Some(b'.'), Some(&c)) => is_sep(c),
            _ => false,
        }
    }

    fn len_before_body(&self) -> usize {
        let root = usize::from(self.front <= State::StartDir && self.has_root);
        let cur = usize::from(self.front <= State::StartDir && self.include_cur_dir());
        root + cur
    }

    fn finished(&self) -> bool {
        self.front == State::Done || self.back == State::Done || self.front > self.back
    }

    fn parse_single(comp: &'a str) -> Option<Component<'a>> {
        match comp {
            "." | "" => None,
            ".." => Some(Component::ParentDir),
            _ => Some(Component::Normal(comp)),
        }
    }

    fn parse_next(&self) -> (usize, Option<Component<'a>>) {
        let (extra, comp) = match self.path.bytes().position(is_sep) {
            None => (0, self.path),
            Some(i) => (1, &self.path[..i]),
        };
        (comp.len() + extra, Self::parse_single(comp))
    }

    fn parse_next_back(&self) -> (usize, Option<Component<'a>>) {
        let start = self.len_before_body();
        let body = &self.path[start..];
        let (extra, comp) = match body.bytes().rposition(is_sep) {
            None => (0, body),
            Some(i) => (1, &body[i + 1..]),
        };
        (comp.len() + extra, Self::parse_single(comp))
    }

    fn trim_left(&mut self) {
        while !self.path.is_empty() {
            let (size, comp) = self.parse_next();
            if comp.is_some() {
                return;
            }
            self.path = &self.path[size..];
        }
    }

    fn trim_right(&mut self) {
        while self.path.len() > self.len_before_body() {
            let (size, comp) = self.parse_next_back();
            if comp.is_some() {
                return;
            }
            self.path = &self.path[..self.path.len() - size];
        }
    }

    /// The rest of the path, as std's `Components::as_path`.
    pub fn as_path(&self) -> &'a Path {
        let mut c = self.clone();
        if c.front == State::Body {
            c.trim_left();
        }
        if c.back == State::Body {
            c.trim_right();
        }
        Path::new(c.path)
    }
}

impl<'a> Iterator for Components<'a> {
    type Item = Component<'a>;

    fn next(&mut self) -> Option<Component<'a>> {
        while !self.finished() {
            match self.front {
                State::Prefix => self.front = State::StartDir,
                State::StartDir => {
                    self.front = State::Body;
                    if self.has_root {
                        self.path = &self.path[1..];
                        return Some(Component::RootDir);
                    } else if self.include_cur_dir() {
                        self.path = &self.path[1..];
                        return Some(Component::CurDir);
                    }
                }
                State::Body if !self.path.is_empty() => {
                    let (size, comp) = self.parse_next();
                    self.path = &self.path[size..];
                    if comp.is_some() {
                        return comp;
                    }
                }
                State::Body => self.front = State::Done,
                State::Done => unreachable!("finished() covers Done"),
            }
        }
        None
    }
}

impl<'a> DoubleEndedIterator for Components<'a> {
    fn next_back(&mut self) -> Option<Component<'a>> {
        while !self.finished() {
            match self.back {
                State::Body if self.path.len() > self.len_before_body() => {
                    let (size, comp) = self.parse_next_back();
                    self.path = &self.path[..self.path.len() - size];
                    if comp.is_some() {
                        return comp;
                    }
                }
                State::Body => self.back = State::StartDir,
                State::StartDir => {
                    self.back = State::Prefix;
                    if self.has_root {
                        self.path = &self.path[..self.path.len() - 1];
                        return Some(Component::RootDir);
                    } else if self.include_cur_dir() {
                        self.path = &self.path[..self.path.len() - 1];
                        return Some(Component::CurDir);
                    }
                }
                State::Prefix => {
                    self.back = State::Done;
                    return None;
                }
                State::Done => unreachable!("finished() covers Done"),
            }
        }
        None
    }
}

impl PartialEq for Components<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.clone().eq(other.clone())
    }
}

/// Advances `iter` past `prefix`, or `None` if `prefix` is not a prefix of it.
fn iter_after<'a, 'b, I, J>(mut iter: I, prefix: J) -> Option<I>
where
    I: Iterator<Item = Component<'a>> + Clone,
    J: Iterator<Item = Component<'b>>,
{
    for x in prefix {
        match iter.next() {
            Some(y) if x == y => {}
            _ => return None,
        }
    }
    Some(iter)
}

/// Splits a file name at its last dot, as std does (`..` and dot-files have no extension).
fn rsplit_file_at_dot(file: &str) -> (Option<&str>, Option<&str>) {
    if file == ".." {
        return (Some(file), None);
    }
    let mut it = file.rsplitn(2, '.');
    let after = it.next();
    let before = it.next();
    if before == Some("") { (Some(file), None) } else { (before, after) }
}

/// A borrowed path: an unsized `str` with path operations.
#[repr(transparent)]
pub struct Path {
    inner: str,
}

// Equality, ordering and hashing go by components, as in std: `a//b` equals `a/b`.
impl PartialEq for Path {
    fn eq(&self, other: &Path) -> bool {
        self.components() == other.components()
    }
}

impl Eq for Path {}

impl core::hash::Hash for Path {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        for c in self.components() {
            c.hash(h);
        }
    }
}

impl Path {
    /// Wraps a string slice.
    pub fn new<S: AsRef<str> + ?Sized>(s: &S) -> &Path {
        let s: &str = s.as_ref();
        // SAFETY: `Path` is `repr(transparent)` over `str`, so the pointer cast keeps the
        // layout and the metadata (length); the lifetime is carried over.
        unsafe { &*(s as *const str as *const Path) }
    }

    /// The path as a string slice.
    pub fn as_os_str(&self) -> &OsStr {
        &self.inner
    }

    /// The path as a string slice.
    pub fn to_str(&self) -> Option<&str> {
        Some(&self.inner)
    }

    /// The path as a string (always valid UTF-8 here).
    pub fn to_string_lossy(&self) -> Cow<'_, str> {
        Cow::Borrowed(&self.inner)
    }

    /// An owned copy.
    pub fn to_path_buf(&self) -> PathBuf {
        PathBuf { inner: String::from(&self.inner) }
    }

    /// Whether it starts at the root.
    pub fn is_absolute(&self) -> bool {
        self.has_root()
    }

    /// Whether it is relative.
    pub fn is_relative(&self) -> bool {
        !self.is_absolute()
    }

    /// Whether it starts with `/`.
    pub fn has_root(&self) -> bool {
        self.inner.starts_with('/')
    }

    /// The components.
    pub fn components(&self) -> Components<'_> {
        Components::new(&self.inner)
    }

    /// The components as string slices.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &OsStr> {
        self.components().map(Component::as_os_str)
    }

    /// The path without its last component, or `None` for a root or empty path.
    pub fn parent(&self) -> Option<&Path> {
        let mut comps = self.components();
        let comp = comps.next_back();
        comp.and_then(|p| match p {
            Component::Normal(_) | Component::CurDir | Component::ParentDir => Some(comps.as_path()),
            Component::RootDir => None,
        })
    }

    /// This path and its ancestors.
    pub fn ancestors(&self) -> impl Iterator<Item = &Path> {
        core::iter::successors(Some(self), |p| p.parent())
    }

    /// The last component if it is a normal name.
    pub fn file_name(&self) -> Option<&OsStr> {
        self.components().next_back().and_then(|p| match p {
            Component::Normal(p) => Some(p),
            _ => None,
        })
    }

    /// The file name without its extension.
    pub fn file_stem(&self) -> Option<&OsStr> {
        self.file_name().map(rsplit_file_at_dot).and_then(|(before, after)| before.or(after))
    }

    /// The extension of the file name.
    pub fn extension(&self) -> Option<&OsStr> {
        self.file_name().map(rsplit_file_at_dot).and_then(|(before, after)| before.and(after))
    }

    /// `self` with `path` appended (or replaced by it if it is absolute).
    pub fn join<P: AsRef<Path>>(&self, path: P) -> PathBuf {
        let mut buf = self.to_path_buf();
        buf.push(path);
        buf
    }

    /// A copy with the file name replaced.
    pub fn with_file_name<S: AsRef<OsStr>>(&self, file_name: S) -> PathBuf {
        let mut buf = self.to_path_buf();
        buf.set_file_name(file_name);
        buf
    }

    /// A copy with the extension replaced (or removed, for `""`).
    pub fn with_extension<S: AsRef<OsStr>>(&self, extension: S) -> PathBuf {
        // As std: drop the old extension first, then set the new one on what is left (which
        // matters for names like `..x`, whose rest `..` has no file name).
        let keep = match self.extension() {
            None => &self.inner,
            Some(old) => &self.inner[..self.inner.len() - old.len()],
        };
        let mut buf = PathBuf::from(keep);
        buf.set_extension(extension);
        buf
    }

    /// Whether `base` is a component-wise prefix.
    pub fn starts_with<P: AsRef<Path>>(&self, base: P) -> bool {
        iter_after(self.components(), base.as_ref().components()).is_some()
    }

    /// Whether `child` is a component-wise suffix.
    pub fn ends_with<P: AsRef<Path>>(&self, child: P) -> bool {
        iter_after(self.components().rev(), child.as_ref().components().rev()).is_some()
    }

    /// The rest after the component-wise prefix `base`.
    pub fn strip_prefix<P: AsRef<Path>>(&self, base: P) -> Result<&Path, StripPrefixError> {
        iter_after(self.components(), base.as_ref().components()).map(|c| c.as_path()).ok_or(StripPrefixError(()))
    }

    /// A value that displays the path.
    pub fn display(&self) -> Display<'_> {
        Display { path: self }
    }
}

/// Returned by [`Path::strip_prefix`] when the prefix does not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StripPrefixError(());

impl fmt::Display for StripPrefixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("prefix not found")
    }
}

impl core::error::Error for StripPrefixError {}

/// Displays a path (what [`Path::display`] returns).
pub struct Display<'a> {
    path: &'a Path,
}

impl fmt::Display for Display<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.path.inner, f)
    }
}

impl fmt::Debug for Display<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.path.inner, f)
    }
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl PartialOrd for Path {
    fn partial_cmp(&self, other: &Path) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Path {
    fn cmp(&self, other: &Path) -> Ordering {
        self.components().cmp(other.components())
    }
}

impl AsRef<Path> for Path {
    fn as_ref(&self) -> &Path {
        self
    }
}

impl AsRef<Path> for str {
    fn as_ref(&self) -> &Path {
        Path::new(self)
    }
}

impl AsRef<Path> for String {
    fn as_ref(&self) -> &Path {
        Path::new(self.as_str())
    }
}

impl AsRef<str> for Path {
    fn as_ref(&self) -> &str {
        &self.inner
    }
}

impl ToOwned for Path {
    type Owned = PathBuf;
    fn to_owned(&self) -> PathBuf {
        self.to_path_buf()
    }
}

impl<'a> IntoIterator for &'a Path {
    type Item = &'a OsStr;
    type IntoIter = core::iter::Map<Components<'a>, fn(Component<'a>) -> &'a OsStr>;
    fn into_iter(self) -> Self::IntoIter {
        self.components().map(Component::as_os_str as fn(Component<'a>) -> &'a OsStr)
    }
}

/// An owned, growable path.
#[derive(Clone, Default)]
pub struct PathBuf {
    inner: String,
}

impl PathBuf {
    /// An empty path.
    pub fn new() -> PathBuf {
        PathBuf { inner: String::new() }
    }

    /// The path as a `Path`.
    pub fn as_path(&self) -> &Path {
        Path::new(self.inner.as_str())
    }

    /// Appends `path` (replaces everything if it is absolute).
    pub fn push<P: AsRef<Path>>(&mut self, path: P) {
        let path = path.as_ref();
        let need_sep = self.inner.as_bytes().last().is_some_and(|&c| !is_sep(c));
        if path.is_absolute() {
            self.inner.clear();
        } else if need_sep {
            self.inner.push('/');
        }
        self.inner.push_str(&path.inner);
    }

    /// Truncates to the parent; `false` if there is none.
    pub fn pop(&mut self) -> bool {
        match self.as_path().parent().map(|p| p.inner.len()) {
            Some(len) => {
                self.inner.truncate(len);
                true
            }
            None => false,
        }
    }

    /// Replaces the file name (or appends it if there is none).
    pub fn set_file_name<S: AsRef<OsStr>>(&mut self, file_name: S) {
        if self.file_name().is_some() {
            let popped = self.pop();
            debug_assert!(popped);
        }
        self.push(file_name.as_ref());
    }

    /// Replaces the extension; `false` if there is no file name.
    pub fn set_extension<S: AsRef<OsStr>>(&mut self, extension: S) -> bool {
        let Some(stem) = self.file_stem() else { return false };
        // The stem is a slice of `inner`: everything after it goes.
        let end = stem.as_ptr() as usize + stem.len() - self.inner.as_ptr() as usize;
        self.inner.truncate(end);
        let ext = extension.as_ref();
        if !ext.is_empty() {
            self.inner.push('.');
            self.inner.push_str(ext);
        }
        true
    }

    /// The underlying string.
    pub fn into_os_string(self) -> OsString {
        self.inner
    }

    /// Boxes it.
    pub fn into_boxed_path(self) -> Box<Path> {
        let b: Box<str> = self.inner.into_boxed_str();
        // SAFETY: `Path` is `repr(transparent)` over `str`; the box's pointer and metadata are
        // kept, and the allocation's layout is that of the `str`.
        unsafe { Box::from_raw(Box::into_raw(b) as *mut Path) }
    }

    /// Capacity of the buffer.
    pub fn capacity(&self) -> usize {
        self.inner.capacity()
    }
}

impl Deref for PathBuf {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.as_path()
    }
}

impl Borrow<Path> for PathBuf {
    fn borrow(&self) -> &Path {
        self.as_path()
    }
}

impl AsRef<Path> for PathBuf {
    fn as_ref(&self) -> &Path {
        self.as_path()
    }
}

impl AsRef<str> for PathBuf {
    fn as_ref(&self) -> &str {
        &self.inner
    }
}

impl From<&str> for PathBuf {
    fn from(s: &str) -> PathBuf {
        PathBuf { inner: String::from(s) }
    }
}

impl From<String> for PathBuf {
    fn from(s: String) -> PathBuf {
        PathBuf { inner: s }
    }
}

impl From<&Path> for PathBuf {
    fn from(p: &Path) -> PathBuf {
        p.to_path_buf()
    }
}

impl From<PathBuf> for String {
    fn from(p: PathBuf) -> String {
        p.inner
    }
}

impl<P: AsRef<Path>> FromIterator<P> for PathBuf {
    fn from_iter<I: IntoIterator<Item = P>>(iter: I) -> PathBuf {
        let mut buf = PathBuf::new();
        for p in iter {
            buf.push(p);
        }
        buf
    }
}

impl<P: AsRef<Path>> Extend<P> for PathBuf {
    fn extend<I: IntoIterator<Item = P>>(&mut self, iter: I) {
        for p in iter {
            self.push(p);
        }
    }
}

impl fmt::Debug for PathBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_path(), f)
    }
}

impl PartialEq for PathBuf {
    fn eq(&self, other: &PathBuf) -> bool {
        self.components() == other.components()
    }
}

impl Eq for PathBuf {}

impl core::hash::Hash for PathBuf {
    fn hash<H: core::hash::Hasher>(&self, h: &mut H) {
        self.as_path().hash(h)
    }
}

impl PartialOrd for PathBuf {
    fn partial_cmp(&self, other: &PathBuf) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for PathBuf {
    fn cmp(&self, other: &PathBuf) -> Ordering {
        self.as_path().cmp(other.as_path())
    }
}

impl PartialEq<Path> for PathBuf {
    fn eq(&self, other: &Path) -> bool {
        self.components() == other.components()
    }
}

impl PartialEq<PathBuf> for Path {
    fn eq(&self, other: &PathBuf) -> bool {
        self.components() == other.components()
    }
}

impl<'a> PartialEq<&'a Path> for PathBuf {
    fn eq(&self, other: &&'a Path) -> bool {
        self.components() == other.components()
    }
}
