//! Shared corpus generators for the criterion benches.
