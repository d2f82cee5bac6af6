;; The delos host module: print checks its pointer against the caller's memory.
;;   good: prints a string from memory, returns 0.
;;   bad: asks to print 16 bytes at 0xfffffff0 (outside the one-page memory): EFAULT (21).
(module
  (import "delos" "print" (func $print (param i32 i32) (result i32)))
  (memory 1)
  (data (i32.const 16) "hello through delos.print\n")
  (func (export "good") (result i32)
    (call $print (i32.const 16) (i32.const 26)))
  (func (export "bad") (result i32)
    (call $print (i32.const 0xfffffff0) (i32.const 16))))
