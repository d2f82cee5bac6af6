;; Version 2 of a module other modules import from: bump() adds 10 to a counter in memory.
(module
  (memory (export "memory") 1)
  (global $calls (export "calls") (mut i32) (i32.const 0))
  (func $bump (export "bump") (result i32)
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 10)))
    (i32.load (i32.const 0)))
  (func (export "count") (result i32) (global.get $calls))
)
