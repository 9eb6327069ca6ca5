//! Writing ONNX: a protobuf encoder, a graph builder, and the llama decoder graph.

pub mod graph;
pub mod llama;
mod proto;
