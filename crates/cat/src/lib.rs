//! `cat PATH...`: prints text files of the kernel's file view (see the vfs crate).
#![no_std]
#![forbid(unsafe_code)]

/// One line for `help`.
pub static DESCRIPTION: &str = "print text files: cat PATH...";

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    if args.len() < 2 {
        nano_core::println!("usage: cat PATH...");
        return 2;
    }
    let mut status = 0;
    for p in &args[1..] {
        let path = path::Path::new(p);
        match vfs::lookup(path) {
            Ok(vfs::Node::File(b)) => match core::str::from_utf8(b) {
                Ok(text) => nano_core::print!("{text}"),
                Err(_) => {
                    nano_core::println!("cat: {}: binary file ({} bytes)", vfs::normalize(path).display(), b.len());
                    status = 1;
                }
            },
            Ok(vfs::Node::Opaque(n)) => {
                nano_core::println!("cat: {}: binary object ({n} bytes)", vfs::normalize(path).display());
                status = 1;
            }
            Ok(vfs::Node::Dir(_)) => {
                nano_core::println!("cat: {}: is a directory", vfs::normalize(path).display());
                status = 1;
            }
            Err(e) => {
                nano_core::println!("cat: {e}");
                status = 1;
            }
        }
    }
    status
}
