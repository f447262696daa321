//! Weight quantization: int4/int8 weight-only formats, converters and the RTN quantizer.
