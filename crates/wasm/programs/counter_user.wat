;; Imports counter.bump (another loaded module) and calls it twice.
(module
  (import "counter" "bump" (func $bump (result i32)))
  (func (export "twice") (result i32) (drop (call $bump)) (call $bump))
)
