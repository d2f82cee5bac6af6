//! `qsort` and `bsearch` over raw element arrays with a C comparator.

/// Sorts `n` elements of `size` bytes at `base` with `cmp` (heapsort: O(n log n), in place,
/// no allocation, like C's qsort not stable).
///
/// # Safety
/// `base` holds `n * size` writable bytes; `cmp` is safe to call on any two elements.
pub unsafe fn qsort(base: *mut u8, n: usize, size: usize, cmp: &mut dyn FnMut(*const u8, *const u8) -> i32) {
    if n < 2 || size == 0 {
        return;
    }
    // SAFETY: i, j < n, so both elements lie in the array.
    let at = |i: usize| unsafe { base.add(i * size) };
    let swap = |i: usize, j: usize| {
        if i != j {
            // SAFETY: distinct elements of `size` bytes inside the array do not overlap.
            unsafe { core::ptr::swap_nonoverlapping(at(i), at(j), size) }
        }
    };
    let sift = |mut root: usize, end: usize, cmp: &mut dyn FnMut(*const u8, *const u8) -> i32| loop {
        let mut child = 2 * root + 1;
        if child >= end {
            break;
        }
        if child + 1 < end && cmp(at(child), at(child + 1)) < 0 {
            child += 1;
        }
        if cmp(at(root), at(child)) >= 0 {
            break;
        }
        swap(root, child);
        root = child;
    };
    for i in (0..n / 2).rev() {
        sift(i, n, cmp);
    }
    for end in (1..n).rev() {
        swap(0, end);
        sift(0, end, cmp);
    }
}

/// Binary search for `key` in `n` sorted elements; null if absent.
///
/// # Safety
/// As for [`qsort`], read-only.
pub unsafe fn bsearch(key: *const u8, base: *const u8, n: usize, size: usize, cmp: &mut dyn FnMut(*const u8, *const u8) -> i32) -> *mut u8 {
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        // SAFETY: mid < n.
        let p = unsafe { base.add(mid * size) };
        match cmp(key, p) {
            0 => return p as *mut u8,
            c if c < 0 => hi = mid,
            _ => lo = mid + 1,
        }
    }
    core::ptr::null_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_like_the_host() {
        let mut seed = 7u64;
        for n in [0usize, 1, 2, 3, 10, 100, 1000] {
            let mut v: Vec<i32> = (0..n)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 40) as i32 % 50 - 25
                })
                .collect();
            let mut expect = v.clone();
            expect.sort();
            let mut cmp = |a: *const u8, b: *const u8| {
                // SAFETY: the elements are i32s of the vector.
                let (a, b) = unsafe { (*(a as *const i32), *(b as *const i32)) };
                a.cmp(&b) as i32
            };
            // SAFETY: the vector's buffer holds n i32s.
            unsafe { qsort(v.as_mut_ptr() as *mut u8, v.len(), 4, &mut cmp) };
            assert_eq!(v, expect);
            for k in [-26, -25, 0, 3, 24, 25] {
                // SAFETY: as above.
                let p = unsafe { bsearch(&k as *const i32 as *const u8, v.as_ptr() as *const u8, v.len(), 4, &mut cmp) };
                assert_eq!(!p.is_null(), v.contains(&k), "bsearch {k} in {n}");
            }
        }
    }
}
