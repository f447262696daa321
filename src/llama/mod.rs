//! Llama-3: config presets, weight loaders, CPU reference forward, GPU model, e2e bench.
