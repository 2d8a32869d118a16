//! A small, tolerant parser for Triton's `config.pbtxt` (protobuf text format), for the fields the replica uses.
//!
//! The text is parsed into a generic tree first, so unknown fields (`instance_group`, `optimization`, ...) are
//! skipped without knowing their schema; then the known fields are read into `ModelConfig`.

use crate::datatype::DataType;

/// The parts of a Triton model configuration that the replica honours.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelConfig {
    pub name: Option<String>,
    pub platform: Option<String>,
    pub backend: Option<String>,
    /// The model file inside each version folder; `model.onnx` when absent.
    pub default_model_filename: Option<String>,
    /// 0 means the model does not batch: `dims` are the full shape.
    pub max_batch_size: u32,
    pub inputs: Vec<TensorConfig>,
    pub outputs: Vec<TensorConfig>,
    pub dynamic_batching: Option<DynamicBatching>,
}

/// One `input { ... }` or `output { ... }` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorConfig {
    pub name: String,
    pub data_type: DataType,
    /// The shape the client sees, without the batch dimension when `max_batch_size > 0`.
    pub dims: Vec<i64>,
    /// The shape the model sees (`reshape { shape: [...] }`), also without the batch dimension.
    pub reshape: Option<Vec<i64>>,
}

/// `dynamic_batching { ... }`: the inference pool batches queued requests by it (see `pool`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DynamicBatching {
    pub max_queue_delay_microseconds: u64,
    pub preferred_batch_size: Vec<u32>,
}

/// A syntax or schema error, with the 1-based line of the offending token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct PbtxtError {
    pub line: usize,
    pub message: String,
}

/// Parses the text of a `config.pbtxt`.
pub fn parse_model_config(text: &str) -> Result<ModelConfig, PbtxtError> {
    let fields = Parser::new(text).parse_message(None)?;
    ModelConfig::from_fields(&fields)
}

#[derive(Debug, Clone, PartialEq)]
enum Node {
    /// A number, string or identifier, with its line. Strings have their quotes removed.
    Scalar {
        text: String,
        line: usize,
    },
    Message(Vec<Field>),
    List(Vec<Node>),
}

#[derive(Debug, Clone, PartialEq)]
struct Field {
    name: String,
    line: usize,
    value: Node,
}

struct Parser<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    depth: usize,
}

const MAX_DEPTH: usize = 64;

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Self { chars: text.chars().peekable(), line: 1, depth: 0 }
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, PbtxtError> {
        Err(PbtxtError { line: self.line, message: message.into() })
    }

    /// Skips whitespace, `#` comments and the optional `,`/`;` field separators.
    fn skip_trivia(&mut self) {
        while let Some(&c) = self.chars.peek() {
            match c {
                '\n' => {
                    self.line += 1;
                    self.chars.next();
                }
                '#' => {
                    while let Some(&c) = self.chars.peek() {
                        if c == '\n' {
                            break;
                        }
                        self.chars.next();
                    }
                }
                c if c.is_whitespace() || c == ',' || c == ';' => {
                    self.chars.next();
                }
                _ => break,
            }
        }
    }

    fn parse_message(&mut self, close: Option<char>) -> Result<Vec<Field>, PbtxtError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return self.err("nesting is too deep");
        }
        let mut fields = Vec::new();
        loop {
            self.skip_trivia();
            match (self.chars.peek().copied(), close) {
                (None, None) => break,
                (None, Some(c)) => return self.err(format!("unexpected end of file, expected '{c}'")),
                (Some(c), Some(want)) if c == want => {
                    self.chars.next();
                    break;
                }
                _ => {}
            }
            let line = self.line;
            let name = self.identifier()?;
            self.skip_trivia();
            let value = match self.chars.peek().copied() {
                Some(':') => {
                    self.chars.next();
                    self.skip_trivia();
                    self.parse_value()?
                }
                Some('{' | '<' | '[') => self.parse_value()?,
                Some(c) => return self.err(format!("expected ':' or '{{' after '{name}', found '{c}'")),
                None => return self.err(format!("unexpected end of file after '{name}'")),
            };
            fields.push(Field { name, line, value });
        }
        self.depth -= 1;
        Ok(fields)
    }

    fn parse_value(&mut self) -> Result<Node, PbtxtError> {
        match self.chars.peek().copied() {
            Some('{') => {
                self.chars.next();
                Ok(Node::Message(self.parse_message(Some('}'))?))
            }
            Some('<') => {
                self.chars.next();
                Ok(Node::Message(self.parse_message(Some('>'))?))
            }
            Some('[') => {
                self.chars.next();
                let mut items = Vec::new();
                loop {
                    self.skip_trivia();
                    match self.chars.peek() {
                        Some(']') => {
                            self.chars.next();
                            break;
                        }
                        None => return self.err("unexpected end of file, expected ']'"),
                        _ => items.push(self.parse_value()?),
                    }
                }
                Ok(Node::List(items))
            }
            Some('"') | Some('\'') => self.string(),
            Some(_) => {
                let line = self.line;
                let mut text = String::new();
                while let Some(&c) = self.chars.peek() {
                    if c.is_alphanumeric() || matches!(c, '_' | '-' | '+' | '.') {
                        text.push(c);
                        self.chars.next();
                    } else {
                        break;
                    }
                }
                if text.is_empty() {
                    let c = self.chars.peek().copied().unwrap_or(' ');
                    return self.err(format!("unexpected character '{c}'"));
                }
                Ok(Node::Scalar { text, line })
            }
            None => self.err("unexpected end of file, expected a value"),
        }
    }

    fn identifier(&mut self) -> Result<String, PbtxtError> {
        let mut name = String::new();
        while let Some(&c) = self.chars.peek() {
            if c.is_alphanumeric() || c == '_' || c == '.' {
                name.push(c);
                self.chars.next();
            } else {
                break;
            }
        }
        if name.is_empty() {
            let c = self.chars.peek().copied().unwrap_or(' ');
            return self.err(format!("expected a field name, found '{c}'"));
        }
        Ok(name)
    }

    fn string(&mut self) -> Result<Node, PbtxtError> {
        let line = self.line;
        let quote = self.chars.next().unwrap_or('"');
        let mut text = String::new();
        loop {
            match self.chars.next() {
                None | Some('\n') => return self.err("unterminated string"),
                Some(c) if c == quote => break,
                Some('\\') => match self.chars.next() {
                    Some('n') => text.push('\n'),
                    Some('t') => text.push('\t'),
                    Some(c) => text.push(c),
                    None => return self.err("unterminated string"),
                },
                Some(c) => text.push(c),
            }
        }
        Ok(Node::Scalar { text, line })
    }
}

impl ModelConfig {
    fn from_fields(fields: &[Field]) -> Result<Self, PbtxtError> {
        let mut config = ModelConfig::default();
        for field in fields {
            match field.name.as_str() {
                "name" => config.name = Some(scalar(field)?.to_owned()),
                "platform" => config.platform = Some(scalar(field)?.to_owned()),
                "backend" => config.backend = Some(scalar(field)?.to_owned()),
                "default_model_filename" => config.default_model_filename = Some(scalar(field)?.to_owned()),
                "max_batch_size" => config.max_batch_size = number(field, scalar(field)?)?,
                "input" => config.inputs.extend(tensors(field)?),
                "output" => config.outputs.extend(tensors(field)?),
                "dynamic_batching" => config.dynamic_batching = Some(dynamic_batching(field)?),
                _ => {} // instance_group, optimization, version_policy, ...: not ours to honour
            }
        }
        Ok(config)
    }
}

fn schema_err<T>(field: &Field, message: impl Into<String>) -> Result<T, PbtxtError> {
    Err(PbtxtError { line: field.line, message: format!("field '{}': {}", field.name, message.into()) })
}

fn scalar(field: &Field) -> Result<&str, PbtxtError> {
    match &field.value {
        Node::Scalar { text, .. } => Ok(text),
        _ => schema_err(field, "expected a single value"),
    }
}

fn number<T: std::str::FromStr>(field: &Field, text: &str) -> Result<T, PbtxtError> {
    text.parse().or_else(|_| schema_err(field, format!("'{text}' is not a valid number here")))
}

/// Scalar values of a repeated field written either as `dims: [1, 2]` or as repeated `dims: 1`.
fn numbers<T: std::str::FromStr>(field: &Field) -> Result<Vec<T>, PbtxtError> {
    match &field.value {
        Node::Scalar { text, .. } => Ok(vec![number(field, text)?]),
        Node::List(items) => items
            .iter()
            .map(|item| match item {
                Node::Scalar { text, .. } => number(field, text),
                _ => schema_err(field, "expected a list of numbers"),
            })
            .collect(),
        Node::Message(_) => schema_err(field, "expected numbers, found a message"),
    }
}

/// The messages of a field that may be written `input { }` (repeated) or `input [ { }, { } ]`.
fn messages(field: &Field) -> Result<Vec<&[Field]>, PbtxtError> {
    match &field.value {
        Node::Message(fields) => Ok(vec![fields.as_slice()]),
        Node::List(items) => items
            .iter()
            .map(|item| match item {
                Node::Message(fields) => Ok(fields.as_slice()),
                _ => schema_err(field, "expected a list of messages"),
            })
            .collect(),
        Node::Scalar { .. } => schema_err(field, "expected a message in braces"),
    }
}

fn tensors(field: &Field) -> Result<Vec<TensorConfig>, PbtxtError> {
    messages(field)?.into_iter().map(|fields| tensor(field, fields)).collect()
}

fn tensor(parent: &Field, fields: &[Field]) -> Result<TensorConfig, PbtxtError> {
    let (mut name, mut data_type, mut dims, mut reshape) = (None, None, Vec::new(), None);
    for field in fields {
        match field.name.as_str() {
            "name" => name = Some(scalar(field)?.to_owned()),
            "data_type" => {
                let text = scalar(field)?;
                data_type = Some(DataType::from_triton_name(text).map_or_else(
                    || {
                        schema_err(
                            field,
                            format!(
                                "unsupported data type '{text}' (expected TYPE_FP32, TYPE_INT64, TYPE_STRING, ...)"
                            ),
                        )
                    },
                    Ok,
                )?);
            }
            "dims" => dims.extend(numbers::<i64>(field)?),
            "reshape" => {
                let mut shape = Vec::new();
                for inner in messages(field)?.into_iter().flatten() {
                    if inner.name == "shape" {
                        shape.extend(numbers::<i64>(inner)?);
                    }
                }
                reshape = Some(shape);
            }
            _ => {} // format, optional, label_filename, is_shape_tensor, ...
        }
    }
    let Some(name) = name else {
        return schema_err(parent, "an entry has no 'name'");
    };
    let Some(data_type) = data_type else {
        return schema_err(parent, format!("'{name}' has no 'data_type'"));
    };
    if let Some(bad) = dims.iter().find(|d| **d < -1) {
        return schema_err(parent, format!("'{name}' has invalid dimension {bad} (use -1 for a variable size)"));
    }
    Ok(TensorConfig { name, data_type, dims, reshape })
}

fn dynamic_batching(field: &Field) -> Result<DynamicBatching, PbtxtError> {
    let mut batching = DynamicBatching::default();
    for inner in messages(field)?.into_iter().flatten() {
        match inner.name.as_str() {
            "max_queue_delay_microseconds" => batching.max_queue_delay_microseconds = number(inner, scalar(inner)?)?,
            "preferred_batch_size" => batching.preferred_batch_size.extend(numbers::<u32>(inner)?),
            _ => {}
        }
    }
    Ok(batching)
}

#[cfg(test)]
#[path = "pbtxt_tests.rs"]
mod tests;
