;; Imports a kernel symbol by name (harmless: milliseconds since boot). Refused unless the
;; module is run `--trusted`.
(module
  (import "env" "delos_wasm_uptime_ms" (func $uptime (result i64)))
  (func (export "up") (result i64) (call $uptime)))
