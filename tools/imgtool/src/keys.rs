//! The signing key: made once per checkout (`target/keys/signing.key`, 32 random bytes as
//! hex) unless `DELOS_SIGNING_KEY` names a file holding your own seed in that form. Its public
//! half goes to `target/keys/signing.pub`, which nano_core's build compiles in: the kernel then
//! trusts exactly what this key signed (see the `signing` crate).

use crate::{Error, io};
use std::path::{Path, PathBuf};

/// The secret seed, its file, and whether it was just made.
pub struct Key {
    pub seed: [u8; signing::SEED_BYTES],
    pub path: PathBuf,
}

/// Reads the key (or makes it) and writes the public key where nano_core's build reads it.
pub fn ensure(root: &Path) -> Result<Key, Error> {
    let dir = root.join("target/keys");
    io(&dir, std::fs::create_dir_all(&dir))?;
    let path = match std::env::var_os("DELOS_SIGNING_KEY") {
        Some(p) => PathBuf::from(p),
        None => dir.join("signing.key"),
    };
    if !path.exists() {
        if std::env::var_os("DELOS_SIGNING_KEY").is_some() {
            return Err(Error::Key(format!("{} (DELOS_SIGNING_KEY) does not exist", path.display())));
        }
        let mut seed = [0u8; signing::SEED_BYTES];
        let mut f = io(Path::new("/dev/urandom"), std::fs::File::open("/dev/urandom"))?;
        io(Path::new("/dev/urandom"), std::io::Read::read_exact(&mut f, &mut seed))?;
        io(&path, std::fs::write(&path, format!("{}\n", signing::hex(&seed))))?;
        eprintln!("[imgtool] made a signing key in {} (keep it: objects for this kernel must be signed with it)", path.display());
    }
    let text = io(&path, std::fs::read_to_string(&path))?;
    let seed =
        signing::unhex::<{ signing::SEED_BYTES }>(&text, "the signing key").map_err(|e| Error::Key(format!("{}: {e}", path.display())))?;
    let public = dir.join("signing.pub");
    let pk = signing::public_key(&seed);
    if std::fs::read(&public).ok().as_deref() != Some(&pk[..]) {
        io(&public, std::fs::write(&public, pk))?;
    }
    Ok(Key { seed, path })
}

/// `imgtool sign FILE --namespace NS --name NAME`: prints the hex signature `make push` sends.
pub fn sign_push(root: &Path, file: &Path, namespace: &str, name: &str) -> Result<(), Error> {
    let key = ensure(root)?;
    let bytes = io(file, std::fs::read(file))?;
    let message = signing::push_message(namespace, name, &signing::sha512(&bytes));
    println!("{}", signing::hex(&signing::sign(&key.seed, message.as_bytes())));
    Ok(())
}
