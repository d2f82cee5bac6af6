//! placeholder while the loader is written
#![no_std]
