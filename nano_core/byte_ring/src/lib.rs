//! A fixed ring of bytes that one producer fills and any number of consumers drain, without a
//! lock: a UART's receive buffer, filled by its interrupt handler (always on one CPU, with
//! interrupts off) and read by whichever task reads the port.
//!
//! Why no lock: a consumer is an ordinary task, and a task can die anywhere (a fault, a kill).
//! A lock held by a dead reader would silence the port for good, the kind of hang the fault
//! campaign keeps finding. Here a consumer claims a byte with one compare-and-swap of the read
//! position, after reading it; a consumer that dies between the two has claimed nothing.
//!
//! Positions count bytes for ever (wrapping `usize`s); the slot is the position modulo `N`.
//! The producer writes a slot only while it is free (`write - read < N`), so a byte a consumer
//! read stays valid until its claim succeeds or fails.
#![no_std]

use core::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// The ring. `N` is a power of two, so that a slot (position modulo `N`) stays the same when a
/// position wraps.
pub struct ByteRing<const N: usize> {
    bytes: [AtomicU8; N],
    /// Position of the next byte to read.
    read: AtomicUsize,
    /// Position of the next byte to write (only the producer stores it).
    write: AtomicUsize,
}

impl<const N: usize> ByteRing<N> {
    /// An empty ring.
    pub const fn new() -> Self {
        const { assert!(N.is_power_of_two(), "a ring's size is a power of two") };
        ByteRing { bytes: [const { AtomicU8::new(0) }; N], read: AtomicUsize::new(0), write: AtomicUsize::new(0) }
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        let w = self.write.load(Ordering::Acquire);
        let r = self.read.load(Ordering::Acquire);
        w.wrapping_sub(r).min(N)
    }

    /// Whether no byte waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room for more bytes.
    pub fn room(&self) -> usize {
        N - self.len()
    }

    /// Appends `b` (the producer only); `false` if the ring is full.
    pub fn push(&self, b: u8) -> bool {
        let w = self.write.load(Ordering::Relaxed);
        let r = self.read.load(Ordering::Acquire);
        if w.wrapping_sub(r) >= N {
            return false;
        }
        self.bytes[w % N].store(b, Ordering::Relaxed);
        self.write.store(w.wrapping_add(1), Ordering::Release);
        true
    }

    /// Takes the oldest byte (any consumer).
    pub fn pop(&self) -> Option<u8> {
        loop {
            let r = self.read.load(Ordering::Acquire);
            let w = self.write.load(Ordering::Acquire);
            if r == w {
                return None;
            }
            let b = self.bytes[r % N].load(Ordering::Relaxed);
            if self.read.compare_exchange(r, r.wrapping_add(1), Ordering::AcqRel, Ordering::Relaxed).is_ok() {
                return Some(b);
            }
        }
    }
}

impl<const N: usize> Default for ByteRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::ByteRing;
    use std::sync::Arc;
    use std::vec::Vec;

    #[test]
    fn keeps_order_and_refuses_when_full() {
        let r = ByteRing::<4>::new();
        assert_eq!(r.pop(), None);
        for b in 0..4 {
            assert!(r.push(b));
        }
        assert!(!r.push(9), "a full ring refuses");
        assert_eq!(r.len(), 4);
        assert_eq!(r.pop(), Some(0));
        assert!(r.push(4));
        let got: Vec<u8> = core::iter::from_fn(|| r.pop()).collect();
        assert_eq!(got, [1, 2, 3, 4]);
        assert!(r.is_empty());
        assert_eq!(r.room(), 4);
    }

    #[test]
    fn positions_wrap() {
        let r = ByteRing::<4>::new();
        r.read.store(usize::MAX - 1, core::sync::atomic::Ordering::Relaxed);
        r.write.store(usize::MAX - 1, core::sync::atomic::Ordering::Relaxed);
        for b in 10..14 {
            assert!(r.push(b));
        }
        assert!(!r.push(14));
        assert_eq!([r.pop(), r.pop(), r.pop(), r.pop(), r.pop()], [Some(10), Some(11), Some(12), Some(13), None]);
    }

    /// One producer, three consumers: every byte is taken exactly once, and each consumer sees
    /// its bytes in the order they were written.
    #[test]
    fn concurrent_consumers_take_each_byte_once() {
        const COUNT: usize = 200_000;
        let ring = Arc::new(ByteRing::<64>::new());
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let ring = ring.clone();
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    let mut idle = 0u32;
                    while idle < 2_000_000 {
                        match ring.pop() {
                            Some(b) => {
                                seen.push(b);
                                idle = 0;
                            }
                            None => idle += 1,
                        }
                    }
                    seen
                })
            })
            .collect();
        let mut sent = 0usize;
        while sent < COUNT {
            if ring.push((sent % 251) as u8) {
                sent += 1;
            } else {
                std::thread::yield_now();
            }
        }
        let all: Vec<Vec<u8>> = consumers.into_iter().map(|c| c.join().unwrap()).collect();
        assert_eq!(all.iter().map(Vec::len).sum::<usize>(), COUNT);
        let mut counts = [0usize; 251];
        for b in all.iter().flatten() {
            counts[*b as usize] += 1;
        }
        for (v, c) in counts.iter().enumerate() {
            assert_eq!(*c, COUNT / 251 + usize::from(v < COUNT % 251), "value {v}");
        }
    }
}
