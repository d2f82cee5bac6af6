pub fn run(_o: &super::LoadOpts) -> Result<(), String> { Err("bench: not yet".into()) }
