//! Writing ONNX: a protobuf encoder, a graph builder, weights however stored, and the llama
//! decoder graph.

pub mod arch;
pub mod graph;
pub mod llama;
mod proto;
pub mod weight;
