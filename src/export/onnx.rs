//! A model as an ONNX graph (opset 17) built from ONNX's own operators, with ONNX's protobuf
//! messages as tract-onnx ships them, encoded by prost.
//!
//! Input `input_ids` int64 `[batch, maxlen]`, output `probabilities` float `[batch, K]`: what
//! `predict` reports (K = 1, P(positive), for a sigmoid head). Between layers the activations
//! stay batch-major `[B, T, C]` as in Keras; each operator that wants another layout gets a
//! Transpose before and after. Dropout is left out (inference). Padding ids are not masked:
//! like the Keras tutorial's Embedding (no mask_zero) and like [`crate::nn::Network`], the
//! recurrent layers run over the pads too.

use crate::nn::arch::{Activation, Arch, LayerSpec, Recurrent, Shape};
use anyhow::{bail, Result};
use prost::Message;
use tract_onnx::pb::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
    tensor_shape_proto::Dimension, type_proto, AttributeProto, GraphProto, ModelProto, NodeProto,
    OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto,
};

/// The operator set the graph is written for.
pub const OPSET: i64 = 17;
/// ONNX IR version 8, the one that goes with opset 17.
const IR_VERSION: i64 = 8;
pub const INPUT: &str = "input_ids";
pub const OUTPUT: &str = "probabilities";

/// `model.onnx`'s bytes for `arch` with the weights `params` (the arch's flat layout,
/// [`Arch::layout`]).
pub fn model_bytes(arch: &Arch, params: &[f32]) -> Result<Vec<u8>> {
    Ok(model(arch, params)?.encode_to_vec())
}

/// The ONNX model for `arch` and `params`.
pub fn model(arch: &Arch, params: &[f32]) -> Result<ModelProto> {
    let infos = arch.describe()?;
    let layout = arch.layout()?;
    let need = layout.last().map_or(0, |(_, r)| r.end);
    if params.len() != need {
        bail!(
            "the weights have {} values, the model needs {need}",
            params.len()
        );
    }
    let mut g = Graph::default();
    let mut tensors = layout
        .iter()
        .map(|(t, r)| (&t.name, &t.shape, &params[r.clone()]));
    let mut next = |n: usize| -> Vec<(&String, &Vec<usize>, &[f32])> {
        (0..n)
            .map(|_| tensors.next().expect("describe counted the tensors"))
            .collect()
    };
    let mut cur = INPUT.to_string();
    for (i, (layer, info)) in arch.layers.iter().zip(&infos).enumerate() {
        let name = &info.name;
        let input_shape = i.checked_sub(1).map(|p| infos[p].output);
        cur = match layer {
            LayerSpec::Embedding { .. } => {
                let t = next(1);
                let table = g.weight(t[0].0, t[0].1, t[0].2.to_vec());
                g.node("Gather", name, &[&table, &cur], vec![int("axis", 0)])
            }
            LayerSpec::LSTM(_) | LayerSpec::GRU(_) | LayerSpec::Bidirectional { .. } => {
                let (inner, dirs) = match layer {
                    LayerSpec::Bidirectional { layer, .. } => (&**layer, 2),
                    l => (l, 1),
                };
                let (r, gates) = inner.recurrent().expect("describe checked");
                let Some(Shape::Seq { features: d, .. }) = input_shape else {
                    unreachable!("describe checked the input is a sequence")
                };
                let per_dir = next(3 * dirs);
                let w = per_dir.chunks(3).map(|t| (t[0].2, t[1].2, t[2].2));
                recurrent(&mut g, name, &cur, inner, r, gates, d, w.collect())
            }
            LayerSpec::Dropout { .. } => cur,
            LayerSpec::Dense { activation: a, .. } => {
                let t = next(2);
                let kernel = g.weight(t[0].0, t[0].1, t[0].2.to_vec());
                let bias = g.weight(t[1].0, t[1].1, t[1].2.to_vec());
                let y = g.node("Gemm", name, &[&cur, &kernel, &bias], vec![]);
                activation(&mut g, name, &y, *a)
            }
            LayerSpec::Activation { activation: a } => activation(&mut g, name, &cur, *a),
            LayerSpec::Conv1D {
                filters,
                kernel_size: k,
                activation: a,
                ..
            } => {
                let t = next(2);
                let c = t[0].1[1];
                // Keras's kernel [k, C, F] as ONNX's [F, C, k].
                let mut w = vec![0.0; t[0].2.len()];
                for (at, &v) in t[0].2.iter().enumerate() {
                    let (kk, cc, f) = (at / (c * filters), at / filters % c, at % filters);
                    w[(f * c + cc) * k + kk] = v;
                }
                let kernel = g.weight(t[0].0, &[*filters, c, *k], w);
                let bias = g.weight(t[1].0, t[1].1, t[1].2.to_vec());
                let x = g.transpose(name, &cur, &[0, 2, 1]);
                let y = g.node("Conv", name, &[&x, &kernel, &bias], vec![]);
                let y = g.transpose(name, &y, &[0, 2, 1]);
                activation(&mut g, name, &y, *a)
            }
            LayerSpec::MaxPooling1D { pool_size, .. } => {
                let p = *pool_size as i64;
                let x = g.transpose(name, &cur, &[0, 2, 1]);
                let attrs = vec![ints("kernel_shape", &[p]), ints("strides", &[p])];
                let y = g.node("MaxPool", name, &[&x], attrs);
                g.transpose(name, &y, &[0, 2, 1])
            }
            LayerSpec::GlobalMaxPooling1D {} | LayerSpec::GlobalAveragePooling1D {} => {
                let op = match layer {
                    LayerSpec::GlobalMaxPooling1D {} => "ReduceMax",
                    _ => "ReduceMean",
                };
                let attrs = vec![ints("axes", &[1]), int("keepdims", 0)];
                g.node(op, name, &[&cur], attrs)
            }
        };
    }
    // The last operator's output is the graph's.
    let last = g.nodes.last_mut().expect("at least the Gather");
    debug_assert_eq!(last.output[0], cur);
    last.output[0] = OUTPUT.to_string();
    let classes = infos
        .last()
        .expect("at least the Embedding")
        .output
        .features();
    let io = |name: &str, elem: DataType, dims: [Dim; 2]| ValueInfoProto {
        name: name.to_string(),
        r#type: Some(tensor_type(elem, &dims)),
        ..Default::default()
    };
    let graph = GraphProto {
        name: "imdb-lstm".to_string(),
        node: g.nodes,
        initializer: g.weights,
        input: vec![io(
            INPUT,
            DataType::Int64,
            [Dim::Batch, Dim::Fixed(arch.maxlen)],
        )],
        output: vec![io(
            OUTPUT,
            DataType::Float,
            [Dim::Batch, Dim::Fixed(classes)],
        )],
        ..Default::default()
    };
    Ok(ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: OPSET,
        }],
        producer_name: "imdb-lstm".to_string(),
        producer_version: env!("CARGO_PKG_VERSION").to_string(),
        graph: Some(graph),
        ..Default::default()
    })
}

/// An LSTM or GRU layer (one direction, or a Bidirectional's two): ONNX's LSTM / GRU on the
/// time-major input, its output turned back into Keras's `[B, units * dirs]` (last state) or
/// `[B, T, units * dirs]` (return_sequences). `w` holds each direction's Keras (kernel,
/// recurrent kernel, bias).
#[allow(clippy::too_many_arguments)]
fn recurrent(
    g: &mut Graph,
    name: &str,
    x: &str,
    inner: &LayerSpec,
    r: &Recurrent,
    gates: usize,
    d: usize,
    w: Vec<(&[f32], &[f32], &[f32])>,
) -> String {
    let (h, dirs) = (r.units, w.len());
    let gh = gates * h;
    // ONNX gate block k takes Keras's gate block order[k]: LSTM i, o, f, c from i, f, c, o;
    // GRU z, r, h in the same order.
    let order: &[usize] = if gates == 4 {
        &[0, 3, 1, 2]
    } else {
        &[0, 1, 2]
    };
    // Keras [rows, G*H] -> ONNX [G*H, rows], gate blocks reordered.
    let onnx_matrix = |m: &[f32], rows: usize, out: &mut Vec<f32>| {
        for &kg in order {
            for j in 0..h {
                out.extend((0..rows).map(|row| m[row * gh + kg * h + j]));
            }
        }
    };
    let reorder = |v: &[f32], out: &mut Vec<f32>| {
        for &kg in order {
            out.extend_from_slice(&v[kg * h..(kg + 1) * h]);
        }
    };
    let (mut wx, mut wr, mut b) = (Vec::new(), Vec::new(), Vec::new());
    for (kernel, recurrent_kernel, bias) in w {
        onnx_matrix(kernel, d, &mut wx);
        onnx_matrix(recurrent_kernel, h, &mut wr);
        if gates == 4 {
            // ONNX adds an input bias and a recurrent bias; Keras's LSTM has one.
            reorder(bias, &mut b);
            b.extend(std::iter::repeat_n(0.0, gh));
        } else {
            // Keras's reset_after GRU: [input bias; recurrent bias], as ONNX's Wb and Rb.
            reorder(&bias[..gh], &mut b);
            reorder(&bias[gh..], &mut b);
        }
    }
    let (dirs_i, h_i) = (dirs as i64, h as i64);
    let wx = g.weight(&format!("{name}/W"), &[dirs, gh, d], wx);
    let wr = g.weight(&format!("{name}/R"), &[dirs, gh, h], wr);
    let b = g.weight(&format!("{name}/B"), &[dirs, 2 * gh], b);
    let xt = g.transpose(name, x, &[1, 0, 2]);
    let direction = if dirs == 2 {
        "bidirectional"
    } else {
        "forward"
    };
    let mut attrs = vec![int("hidden_size", h_i), string("direction", direction)];
    let op = match inner {
        LayerSpec::GRU(_) => {
            attrs.push(int("linear_before_reset", 1));
            "GRU"
        }
        _ => "LSTM",
    };
    let (y, y_h) = (g.fresh(name, "Y"), g.fresh(name, "Y_h"));
    let node_name = g.fresh(name, op);
    g.nodes.push(NodeProto {
        op_type: op.to_string(),
        name: node_name,
        input: vec![xt, wx, wr, b],
        output: vec![y.clone(), y_h.clone()],
        attribute: attrs,
        ..Default::default()
    });
    if r.return_sequences {
        // Y [T, dirs, B, H] -> [B, T, dirs, H] -> [B, T, dirs * H]: at each step the forward
        // state, then the backward one (which has read the steps from the end back to it).
        let yb = g.transpose(name, &y, &[2, 0, 1, 3]);
        let shape = g.weight_i64(&format!("{name}/shape"), &[0, 0, dirs_i * h_i]);
        g.node("Reshape", name, &[&yb, &shape], vec![])
    } else {
        // Y_h [dirs, B, H] -> [B, dirs, H] -> [B, dirs * H]: the forward layer's last state,
        // then the backward layer's, which Keras's backward layer returns as its last output.
        let yb = g.transpose(name, &y_h, &[1, 0, 2]);
        let shape = g.weight_i64(&format!("{name}/shape"), &[0, dirs_i * h_i]);
        g.node("Reshape", name, &[&yb, &shape], vec![])
    }
}

/// `x` through the Keras activation `a` (linear: `x` itself). Softmax is over the last axis.
fn activation(g: &mut Graph, name: &str, x: &str, a: Activation) -> String {
    let op = match a {
        Activation::Linear => return x.to_string(),
        Activation::Relu => "Relu",
        Activation::Sigmoid => "Sigmoid",
        Activation::Softmax => {
            return g.node("Softmax", name, &[x], vec![int("axis", -1)]);
        }
        Activation::Tanh => "Tanh",
    };
    g.node(op, name, &[x], vec![])
}

/// The nodes and weights so far; names are the Keras layer's, made unique.
#[derive(Default)]
struct Graph {
    nodes: Vec<NodeProto>,
    weights: Vec<TensorProto>,
    used: std::collections::HashSet<String>,
}

impl Graph {
    /// `base`, or `base_2`, `base_3`, ... when taken.
    fn unique(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut n = 1;
        while !self.used.insert(name.clone()) {
            n += 1;
            name = format!("{base}_{n}");
        }
        name
    }

    /// `layer/what`, made unique.
    fn fresh(&mut self, layer: &str, what: &str) -> String {
        self.unique(&format!("{layer}/{what}"))
    }

    /// A node with one output; returns the output's name.
    fn node(
        &mut self,
        op: &str,
        layer: &str,
        inputs: &[&str],
        attrs: Vec<AttributeProto>,
    ) -> String {
        let out = self.fresh(layer, op);
        self.nodes.push(NodeProto {
            op_type: op.to_string(),
            name: out.clone(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![out.clone()],
            attribute: attrs,
            ..Default::default()
        });
        out
    }

    fn transpose(&mut self, layer: &str, x: &str, perm: &[i64]) -> String {
        self.node("Transpose", layer, &[x], vec![ints("perm", perm)])
    }

    /// A float initializer; returns its name.
    fn weight(&mut self, name: &str, shape: &[usize], values: Vec<f32>) -> String {
        let name = self.unique(name);
        self.weights.push(TensorProto {
            name: name.clone(),
            dims: shape.iter().map(|&d| d as i64).collect(),
            data_type: DataType::Float as i32,
            float_data: values,
            ..Default::default()
        });
        name
    }

    /// A 1-D int64 initializer (a Reshape's shape); returns its name.
    fn weight_i64(&mut self, name: &str, values: &[i64]) -> String {
        let name = self.unique(name);
        self.weights.push(TensorProto {
            name: name.clone(),
            dims: vec![values.len() as i64],
            data_type: DataType::Int64 as i32,
            int64_data: values.to_vec(),
            ..Default::default()
        });
        name
    }
}

/// A dimension of the graph's input or output.
enum Dim {
    /// The batch: any size, named `batch`.
    Batch,
    Fixed(usize),
}

fn tensor_type(elem: DataType, dims: &[Dim]) -> TypeProto {
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Batch => dimension::Value::DimParam("batch".to_string()),
                Dim::Fixed(n) => dimension::Value::DimValue(*n as i64),
            }),
            ..Default::default()
        })
        .collect();
    TypeProto {
        value: Some(type_proto::Value::TensorType(type_proto::Tensor {
            elem_type: elem as i32,
            shape: Some(TensorShapeProto { dim }),
        })),
        ..Default::default()
    }
}

fn int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

fn ints(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::Ints as i32,
        ints: v.to_vec(),
        ..Default::default()
    }
}

fn string(name: &str, s: &str) -> AttributeProto {
    AttributeProto {
        name: name.to_string(),
        r#type: AttributeType::String as i32,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}
