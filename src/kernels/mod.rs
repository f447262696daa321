//! Kernel families: shapes, inputs, launch geometry, FLOP and byte counts, references.
