;; Small compute kernels: recursive Fibonacci, a sum over memory, a backtrace requested from a
;; host function three WASM frames deep, and a host function that panics under WASM frames.
(module
  (import "delos" "delos_wasm_backtrace" (func $backtrace))
  (import "delos" "delos_wasm_panic" (func $panic))
  (memory 1)
  (func $fib (export "fib") (param $n i32) (result i32)
    (if (result i32) (i32.lt_u (local.get $n) (i32.const 2))
      (then (local.get $n))
      (else (i32.add (call $fib (i32.sub (local.get $n) (i32.const 1)))
                     (call $fib (i32.sub (local.get $n) (i32.const 2)))))))
  (func $sum (export "sum") (param $n i32) (result i64) (local $i i32) (local $acc i64)
    (block $done (loop $next
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store (i32.shl (i32.and (local.get $i) (i32.const 1023)) (i32.const 2)) (local.get $i))
      (local.set $acc (i64.add (local.get $acc)
        (i64.extend_i32_u (i32.load (i32.shl (i32.and (local.get $i) (i32.const 1023)) (i32.const 2))))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $next)))
    (local.get $acc))
  (func $inner (call $backtrace))
  (func $middle (call $inner))
  (func $outer (export "show_backtrace") (call $middle))
  ;; A panic in the host function unwinds the task through these two WASM frames.
  (func $panics (call $panic))
  (func (export "host_panic") (call $panics))
)
