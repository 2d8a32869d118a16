//! `GET /swagger.json?version=2|3|3.1`: an OpenAPI document built from the served models' metadata.
//!
//! The document has the shape of azmlinfsrv's templates (contract §2.3; `python/sluice_worker/swagger.py` builds the
//! same for scoring scripts, so both replica kinds answer alike): `GET /` (`ServiceHealthCheck`), `POST /score`
//! (`RunMLService`, described by the `ServiceInput` and `ServiceOutput` schemas), `GET /swagger.json`
//! (`GetSwaggerSpec`) and an `ErrorResponse` of `{message}`. The KServe v2 routes follow, with `{model}` an enum of
//! the served models.
//!
//! `ServiceInput` describes what `/score` accepts for the model, as `score.rs` parses it:
//! - an MLflow model with a column signature: `input_data` as a split-orient DataFrame;
//! - any other MLflow model: `input_data` as named tensors;
//! - a Triton model: the KServe v2 infer body (`/score` answers like `/v2/models/<model>/infer`).
//!
//! With several models `/score` answers 404, so the document leaves it out. Version 2 (or 2.0, and no version) is
//! Swagger 2.0, 3 (or 3.0) is OpenAPI 3.0.3, and 3.1 is the 3.0 document labelled 3.1.0, as azmlinfsrv does; the
//! schemas avoid what 3.0 and 3.1 read differently (`nullable`, boolean `exclusiveMinimum`), so it is valid 3.1.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::AppState;
use super::errors::{Envelope, ErrorResponse};
use crate::datatype::DataType;
use crate::error::InferError;
use crate::mlflow::MlflowSchema;
use crate::model::{ModelInfo, ModelSet, TensorSpec, shape_text};

use super::swagger_schema::*;

/// The document formats `?version=` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwaggerVersion {
    /// Swagger 2.0 (`?version=2`, `2.0`, or none).
    V2,
    /// OpenAPI 3.0.3 (`?version=3`, `3.0`).
    V3,
    /// OpenAPI 3.1.0 (`?version=3.1`).
    V3_1,
}

impl SwaggerVersion {
    /// The versions as azmlinfsrv lists them in its 404 message.
    pub const SUPPORTED: &'static str = "2, 3, 3.1";

    /// Parses a `?version=` value; the aliases are azmlinfsrv's.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "2" | "2.0" => Some(Self::V2),
            "3" | "3.0" => Some(Self::V3),
            "3.1" => Some(Self::V3_1),
            _ => None,
        }
    }

    fn ref_prefix(self) -> &'static str {
        match self {
            Self::V2 => "#/definitions/",
            Self::V3 | Self::V3_1 => "#/components/schemas/",
        }
    }
}

/// `GET /swagger.json`: the document for `?version=` (default 2); 404 `{"message": ...}` for another version.
pub async fn swagger(
    State(state): State<Arc<AppState>>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Response {
    let pairs = match query {
        Ok(Query(pairs)) => pairs,
        Err(rejection) => {
            let error = InferError::bad_request(format!("cannot read the query string: {}", rejection.body_text()));
            return ErrorResponse(Envelope::Azure, error).into_response();
        }
    };
    // The first `version` wins, as in the Python worker.
    let requested = pairs.iter().find(|(key, _)| key == "version").map_or("2", |(_, value)| value.as_str());
    match SwaggerVersion::parse(requested) {
        Some(version) => Json(document(&state.models, version)).into_response(),
        None => {
            let message = format!(
                "Swagger version [{requested}] is not valid. Supported versions: [{}].",
                SwaggerVersion::SUPPORTED
            );
            ErrorResponse(Envelope::Azure, InferError::not_found(message)).into_response()
        }
    }
}

/// The OpenAPI document for `models` in `version`.
pub fn document(models: &ModelSet, version: SwaggerVersion) -> Value {
    let infos: Vec<&ModelInfo> = models.iter().map(|m| &m.info).collect();
    Builder { version, models: &infos }.build()
}

const HEALTH_DESC: &str = "Simple health check endpoint to ensure the service is up at any given point.";
const HEALTH_OK: &str = "If service is up and running, this response will be returned with the content 'Healthy'";
const SCORE_DESC: &str = "Run web service's model and get the prediction output";
const SCORE_INPUT: &str = "The input payload for executing the real-time machine learning service.";
const SCORE_OK: &str = "The service processed the input correctly and provided a result prediction, if applicable.";
const FAILED: &str = "The service failed to execute due to an error.";

/// Examples hold at most this many values per request; a bigger model gets a schema without an example.
pub(super) const EXAMPLE_VALUES: usize = 16_384;

/// One operation, rendered for Swagger 2.0 or OpenAPI 3.
struct Operation {
    id: &'static str,
    description: String,
    secured: bool,
    params: Vec<Parameter>,
    body: Option<Body>,
    ok: Reply,
    /// The definition that describes error bodies.
    error: &'static str,
}

struct Parameter {
    name: &'static str,
    location: &'static str,
    required: bool,
    description: &'static str,
    /// A primitive schema (`type`, `enum`), inlined into the parameter for Swagger 2.0.
    schema: Value,
}

struct Body {
    name: &'static str,
    description: String,
    schema: Value,
    /// Named examples (OpenAPI 3 only; Swagger 2.0 has the schema's `example`).
    examples: Vec<(String, Value)>,
}

struct Reply {
    description: String,
    media_type: &'static str,
    schema: Value,
    example: Option<Value>,
}

struct Builder<'a> {
    version: SwaggerVersion,
    models: &'a [&'a ModelInfo],
}

impl Builder<'_> {
    fn reference(&self, name: &str) -> Value {
        json!({ "$ref": format!("{}{name}", self.version.ref_prefix()) })
    }

    fn single(&self) -> Option<&ModelInfo> {
        match self.models {
            [info] => Some(info),
            _ => None,
        }
    }

    fn build(&self) -> Value {
        let (title, description, version) = self.info();
        let info = json!({ "title": title, "description": description, "version": version });
        let mut paths = Map::new();
        paths.insert("/".into(), json!({ "get": self.render(self.health()) }));
        if let Some(model) = self.single() {
            paths.insert("/score".into(), json!({ "post": self.render(self.score(model)) }));
        }
        paths.insert("/swagger.json".into(), json!({ "get": self.render(self.swagger_op()) }));
        for (path, method, op) in self.v2_operations() {
            paths.insert(path.into(), json!({ method: self.render(op) }));
        }
        let definitions = Value::Object(self.definitions());
        let bearer = json!({
            "type": "apiKey",
            "name": "Authorization",
            "in": "header",
            "description": "For example: Bearer abc123",
        });
        match self.version {
            SwaggerVersion::V2 => json!({
                "swagger": "2.0",
                "info": info,
                "consumes": ["application/json"],
                "produces": ["application/json"],
                "securityDefinitions": { "Bearer": bearer },
                "paths": paths,
                "definitions": definitions,
            }),
            SwaggerVersion::V3 | SwaggerVersion::V3_1 => json!({
                "openapi": if self.version == SwaggerVersion::V3 { "3.0.3" } else { "3.1.0" },
                "info": info,
                "security": [{ "Bearer": [] }],
                "paths": paths,
                "components": { "schemas": definitions, "securitySchemes": { "Bearer": bearer } },
            }),
        }
    }

    /// The title, description and version of `info`.
    fn info(&self) -> (String, String, String) {
        let described: Vec<String> =
            self.models.iter().map(|m| format!("'{}' version {} ({})", m.name, m.version, kind(m))).collect();
        let names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
        let title = names.join(", ");
        let mut description = format!(
            "API specification for the Azure Machine Learning service {title}. ONNX {}: {}.",
            if self.models.len() == 1 { "model" } else { "models" },
            described.join("; ")
        );
        if self.models.len() > 1 {
            description.push_str(
                " This replica serves several models, so /score is not available: use /v2/models/{model}/infer.",
            );
        }
        let versions: BTreeSet<&str> = self.models.iter().map(|m| m.version.as_str()).collect();
        let version = match versions.into_iter().collect::<Vec<_>>().as_slice() {
            [one] => (*one).to_owned(),
            _ => self.models.iter().map(|m| format!("{}:{}", m.name, m.version)).collect::<Vec<_>>().join(", "),
        };
        (title, description, version)
    }

    fn health(&self) -> Operation {
        Operation {
            id: "ServiceHealthCheck",
            description: HEALTH_DESC.into(),
            secured: false,
            params: Vec::new(),
            body: None,
            ok: Reply {
                description: HEALTH_OK.into(),
                media_type: "text/plain",
                schema: json!({ "type": "string" }),
                example: Some(json!("Healthy")),
            },
            error: "ErrorResponse",
        }
    }

    fn score(&self, model: &ModelInfo) -> Operation {
        let triton = model.mlflow.is_none();
        let mut description = format!("{SCORE_DESC} (model '{}' version {}).", model.name, model.version);
        if triton {
            description.push_str(" The body is a KServe v2 inference request, as for /v2/models/{model}/infer.");
        }
        Operation {
            id: "RunMLService",
            description,
            secured: true,
            params: Vec::new(),
            body: Some(Body {
                name: "serviceInputPayload",
                description: SCORE_INPUT.into(),
                schema: self.reference("ServiceInput"),
                examples: Vec::new(),
            }),
            ok: Reply {
                description: SCORE_OK.into(),
                media_type: "application/json",
                schema: self.reference("ServiceOutput"),
                example: None,
            },
            error: if triton { "V2ErrorResponse" } else { "ErrorResponse" },
        }
    }

    fn swagger_op(&self) -> Operation {
        Operation {
            id: "GetSwaggerSpec",
            description: "Get the Swagger specification.".into(),
            secured: false,
            params: vec![Parameter {
                name: "version",
                location: "query",
                required: false,
                description: "2 (the default) gives Swagger 2.0, 3 OpenAPI 3.0, 3.1 OpenAPI 3.1.",
                schema: json!({ "type": "string", "enum": ["2", "2.0", "3", "3.0", "3.1"] }),
            }],
            body: None,
            ok: Reply {
                description: "The Swagger specification.".into(),
                media_type: "application/json",
                schema: json!({ "type": "object" }),
                example: None,
            },
            error: "ErrorResponse",
        }
    }

    fn model_param(&self) -> Parameter {
        let names: Vec<&str> = self.models.iter().map(|m| m.name.as_str()).collect();
        Parameter {
            name: "model",
            location: "path",
            required: true,
            description: "The model's name.",
            schema: json!({ "type": "string", "enum": names }),
        }
    }

    fn v2_operations(&self) -> Vec<(&'static str, &'static str, Operation)> {
        let simple = |id: &'static str, description: &str, schema: Value, params: Vec<Parameter>| Operation {
            id,
            description: description.into(),
            secured: true,
            params,
            body: None,
            ok: Reply { description: "OK.".into(), media_type: "application/json", schema, example: None },
            error: "V2ErrorResponse",
        };
        let flag = |name: &str| {
            json!({
                "type": "object",
                "required": [name],
                "properties": { name: { "type": "boolean" } },
            })
        };
        let ready = json!({
            "type": "object",
            "required": ["name", "ready"],
            "properties": { "name": { "type": "string" }, "ready": { "type": "boolean" } },
        });
        let mut metadata = simple(
            "ModelMetadata",
            "KServe v2 model metadata: the inputs and outputs with their datatypes and shapes (-1: any size).",
            self.reference("V2ModelMetadata"),
            vec![self.model_param()],
        );
        metadata.ok.description = "The model's metadata.".into();
        let examples = if self.models.len() > 1 {
            self.models.iter().filter_map(|m| v2_request_example(m).map(|example| (m.name.clone(), example))).collect()
        } else {
            Vec::new()
        };
        let infer = Operation {
            id: "ModelInfer",
            description: "KServe v2 (Open Inference Protocol) inference. Each input's data is a flat (row-major) or \
                          nested list of its shape's values. The binary tensor data extension is also accepted."
                .into(),
            secured: true,
            params: vec![self.model_param()],
            body: Some(Body {
                name: "inferenceRequest",
                description: "The inputs to run the model on, and optionally the outputs to return.".into(),
                schema: self.reference("V2InferenceRequest"),
                examples,
            }),
            ok: Reply {
                description: "The model's outputs.".into(),
                media_type: "application/json",
                schema: self.reference("V2InferenceResponse"),
                example: None,
            },
            error: "V2ErrorResponse",
        };
        vec![
            ("/v2/health/live", "get", simple("ServerLive", "KServe v2 liveness.", flag("live"), Vec::new())),
            ("/v2/health/ready", "get", simple("ServerReady", "KServe v2 readiness.", flag("ready"), Vec::new())),
            ("/v2/models/{model}", "get", metadata),
            (
                "/v2/models/{model}/ready",
                "get",
                simple("ModelReady", "KServe v2 model readiness.", ready, vec![self.model_param()]),
            ),
            ("/v2/models/{model}/infer", "post", infer),
        ]
    }

    fn render(&self, op: Operation) -> Value {
        let mut out = Map::new();
        out.insert("operationId".into(), json!(op.id));
        out.insert("description".into(), json!(op.description));
        if op.secured {
            out.insert("security".into(), json!([{ "Bearer": [] }]));
        }
        let error = self.reference(op.error);
        match self.version {
            SwaggerVersion::V2 => {
                let mut params: Vec<Value> = op
                    .params
                    .into_iter()
                    .map(|p| {
                        let mut param = json!({
                            "name": p.name,
                            "in": p.location,
                            "required": p.required,
                            "description": p.description,
                        });
                        if let (Some(param), Value::Object(schema)) = (param.as_object_mut(), p.schema) {
                            param.extend(schema);
                        }
                        param
                    })
                    .collect();
                if let Some(body) = op.body {
                    params.push(json!({
                        "name": body.name,
                        "in": "body",
                        "required": true,
                        "description": body.description,
                        "schema": body.schema,
                    }));
                }
                if !params.is_empty() {
                    out.insert("parameters".into(), Value::Array(params));
                }
                let mut ok = json!({ "description": op.ok.description, "schema": op.ok.schema });
                if let Some(example) = op.ok.example {
                    // azmlinfsrv's template lists the health check's example under application/json.
                    ok["examples"] = json!({ "application/json": example });
                }
                out.insert(
                    "responses".into(),
                    json!({ "200": ok, "default": { "description": FAILED, "schema": error } }),
                );
            }
            SwaggerVersion::V3 | SwaggerVersion::V3_1 => {
                let params: Vec<Value> = op
                    .params
                    .into_iter()
                    .map(|p| {
                        json!({
                            "name": p.name,
                            "in": p.location,
                            "required": p.required,
                            "description": p.description,
                            "schema": p.schema,
                        })
                    })
                    .collect();
                if !params.is_empty() {
                    out.insert("parameters".into(), Value::Array(params));
                }
                if let Some(body) = op.body {
                    let mut media = json!({ "schema": body.schema });
                    if !body.examples.is_empty() {
                        let examples: Map<String, Value> = body
                            .examples
                            .into_iter()
                            .map(|(name, value)| {
                                let summary = format!("A request for model '{name}'");
                                (name, json!({ "summary": summary, "value": value }))
                            })
                            .collect();
                        media["examples"] = Value::Object(examples);
                    }
                    out.insert(
                        "requestBody".into(),
                        json!({
                            "description": body.description,
                            "required": true,
                            "content": { "application/json": media },
                        }),
                    );
                }
                let mut media = json!({ "schema": op.ok.schema });
                if let Some(example) = op.ok.example {
                    media["example"] = example;
                }
                out.insert(
                    "responses".into(),
                    json!({
                        "200": { "description": op.ok.description, "content": { op.ok.media_type: media } },
                        "default": { "description": FAILED, "content": { "application/json": { "schema": error } } },
                    }),
                );
            }
        }
        Value::Object(out)
    }

    fn definitions(&self) -> Map<String, Value> {
        let mut defs = Map::new();
        let v2_request = self.v2_request_schema();
        let v2_response = self.v2_response_schema();
        if let Some(model) = self.single() {
            let (input, output) = match model.mlflow.as_ref().map(|s| &s.inputs) {
                None => (v2_request.clone(), v2_response.clone()),
                Some(Some(MlflowSchema::Columns(columns))) if !columns.is_empty() => {
                    (service_input(frame_schema(columns)), records_schema(model))
                }
                Some(_) => (service_input(named_tensors_schema(&model.inputs)), tensors_output_schema(model)),
            };
            defs.insert("ServiceInput".into(), input);
            defs.insert("ServiceOutput".into(), output);
        }
        defs.insert(
            "ErrorResponse".into(),
            json!({ "type": "object", "properties": { "message": { "type": "string" } } }),
        );
        defs.insert(
            "V2ErrorResponse".into(),
            json!({ "type": "object", "properties": { "error": { "type": "string" } } }),
        );
        let shape = json!({ "type": "array", "items": { "type": "integer", "format": "int64" } });
        let datatype = json!({ "type": "string", "enum": DataType::ALL.map(DataType::v2_name) });
        defs.insert(
            "V2TensorMetadata".into(),
            json!({
                "type": "object",
                "required": ["name", "datatype", "shape"],
                "properties": { "name": { "type": "string" }, "datatype": datatype, "shape": shape },
            }),
        );
        let mut metadata = json!({
            "type": "object",
            "required": ["name", "versions", "platform", "inputs", "outputs"],
            "properties": {
                "name": { "type": "string" },
                "versions": { "type": "array", "items": { "type": "string" } },
                "platform": { "type": "string" },
                "inputs": { "type": "array", "items": self.reference("V2TensorMetadata") },
                "outputs": { "type": "array", "items": self.reference("V2TensorMetadata") },
            },
        });
        if let Some(first) = self.models.first() {
            metadata["example"] = metadata_example(first);
        }
        defs.insert("V2ModelMetadata".into(), metadata);
        defs.insert("V2RequestInput".into(), self.v2_request_input());
        defs.insert("V2RequestOutput".into(), self.v2_request_output());
        defs.insert("V2InferenceRequest".into(), v2_request);
        defs.insert(
            "V2ResponseOutput".into(),
            json!({
                "type": "object",
                "required": ["name", "datatype", "shape"],
                "properties": {
                    "name": { "type": "string" },
                    "datatype": datatype,
                    "shape": shape,
                    "parameters": {
                        "type": "object",
                        "description": "binary_data_size: the output's bytes in the binary section.",
                    },
                    "data": {
                        "type": "array",
                        "items": {},
                        "description": "The values as a flat (row-major) list; absent when sent as binary data.",
                    },
                },
            }),
        );
        defs.insert("V2InferenceResponse".into(), v2_response);
        defs
    }

    /// Names and datatypes, as enums of the values the served models accept.
    fn names_and_types(&self, pick: impl Fn(&ModelInfo) -> &[TensorSpec]) -> (Vec<&str>, Vec<&'static str>) {
        let mut names: Vec<&str> = Vec::new();
        let mut types: Vec<&'static str> = Vec::new();
        for spec in self.models.iter().flat_map(|m| pick(m)) {
            if !names.contains(&spec.name.as_str()) {
                names.push(&spec.name);
            }
            if !types.contains(&spec.datatype.v2_name()) {
                types.push(spec.datatype.v2_name());
            }
        }
        (names, types)
    }

    fn v2_request_input(&self) -> Value {
        let (names, types) = self.names_and_types(|m| &m.inputs);
        let described: Vec<String> = self
            .models
            .iter()
            .flat_map(|m| m.inputs.iter().map(move |s| (m, s)))
            .map(|(m, s)| {
                let owner = if self.models.len() > 1 { format!("{}.", m.name) } else { String::new() };
                format!("{owner}{}: {} {}", s.name, s.datatype, shape_text(&s.shape))
            })
            .collect();
        json!({
            "type": "object",
            "required": ["name", "shape", "datatype"],
            "description": format!("One input tensor ({}; -1: any size).", described.join(", ")),
            "properties": {
                "name": { "type": "string", "enum": names },
                "shape": { "type": "array", "items": { "type": "integer", "format": "int64", "minimum": 0 } },
                "datatype": { "type": "string", "enum": types },
                "parameters": {
                    "type": "object",
                    "properties": { "binary_data_size": { "type": "integer", "format": "int64", "minimum": 0 } },
                },
                "data": {
                    "type": "array",
                    "items": {},
                    "description": "The shape's values as a flat (row-major) or nested list; leave out for binary data.",
                },
            },
        })
    }

    fn v2_request_output(&self) -> Value {
        let (names, _) = self.names_and_types(|m| &m.outputs);
        json!({
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": { "type": "string", "enum": names },
                "parameters": { "type": "object", "properties": { "binary_data": { "type": "boolean" } } },
            },
        })
    }

    fn v2_request_schema(&self) -> Value {
        let mut schema = json!({
            "type": "object",
            "required": ["inputs"],
            "properties": {
                "id": { "type": "string" },
                "parameters": { "type": "object", "properties": { "binary_data_output": { "type": "boolean" } } },
                "inputs": { "type": "array", "minItems": 1, "items": self.reference("V2RequestInput") },
                "outputs": {
                    "type": "array",
                    "items": self.reference("V2RequestOutput"),
                    "description": "The outputs to return (default: all).",
                },
            },
        });
        if let Some(example) = self.models.first().and_then(|m| v2_request_example(m)) {
            schema["example"] = example;
        }
        schema
    }

    fn v2_response_schema(&self) -> Value {
        json!({
            "type": "object",
            "required": ["model_name", "model_version", "outputs"],
            "properties": {
                "model_name": { "type": "string" },
                "model_version": { "type": "string" },
                "id": { "type": "string" },
                "outputs": { "type": "array", "items": self.reference("V2ResponseOutput") },
            },
        })
    }
}

#[cfg(test)]
#[path = "swagger_tests.rs"]
mod tests;
