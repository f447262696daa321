//! Roofline math: ceilings, attainable performance, ridge point.
