//! `ls [PATH...]`: lists directories of the kernel's file view (see the vfs crate).
#![no_std]
#![forbid(unsafe_code)]

/// One line for `help`.
pub static DESCRIPTION: &str = "list /namespaces and /boot: ls [PATH...]";

/// Entry point.
pub fn main(args: &[&str]) -> isize {
    let paths: &[&str] = if args.len() > 1 { &args[1..] } else { &["/"] };
    let mut status = 0;
    for p in paths {
        let path = path::Path::new(p);
        match vfs::lookup(path) {
            Ok(vfs::Node::Dir(entries)) => {
                if paths.len() > 1 {
                    nano_core::println!("{}:", vfs::normalize(path).display());
                }
                for e in entries {
                    if e.dir {
                        nano_core::println!("{}/", e.name);
                    } else {
                        nano_core::println!("{:<48} {:>9}", e.name, e.size);
                    }
                }
            }
            Ok(vfs::Node::File(b)) => nano_core::println!("{:<48} {:>9}", vfs::normalize(path).display(), b.len()),
            Ok(vfs::Node::Opaque(n)) => nano_core::println!("{:<48} {:>9}", vfs::normalize(path).display(), n),
            Err(e) => {
                nano_core::println!("ls: {e}");
                status = 1;
            }
        }
    }
    status
}
