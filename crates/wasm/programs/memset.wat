;; A hostile module (issue 20): imports the kernel's memset and calls it on an address it
;; chooses. Without `--trusted` the import is refused and nothing is instantiated.
(module
  (import "env" "memset" (func $memset (param i64 i32 i64) (result i64)))
  (func (export "smash") (result i64)
    (call $memset (i64.const 0x1000) (i32.const 0) (i64.const 4096))))
