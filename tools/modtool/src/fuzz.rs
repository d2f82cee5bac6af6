pub fn run(_o: &super::LoadOpts) -> Result<(), String> { Err("fuzz: not yet".into()) }
