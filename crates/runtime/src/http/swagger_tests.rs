use std::path::PathBuf;

use serde_json::{Value, json};

use super::{SwaggerVersion, document};
use crate::datatype::DataType;
use crate::mlflow::{ColumnSpec, MlflowSchema, MlflowSignature, MlflowTensor};
use crate::model::{LoadedModel, ModelInfo, ModelSet, TensorSpec};

const ALL: [SwaggerVersion; 3] = [SwaggerVersion::V2, SwaggerVersion::V3, SwaggerVersion::V3_1];

fn spec(name: &str, datatype: DataType, shape: &[i64]) -> TensorSpec {
    TensorSpec { name: name.into(), datatype, shape: shape.to_vec(), model_shape: None }
}

fn info(name: &str, inputs: Vec<TensorSpec>, outputs: Vec<TensorSpec>, mlflow: Option<MlflowSignature>) -> ModelInfo {
    ModelInfo {
        name: name.into(),
        version: "1".into(),
        platform: "onnxruntime_onnx".into(),
        max_batch_size: 0,
        inputs,
        outputs,
        batching: None,
        mlflow,
        source: PathBuf::from("model.onnx"),
    }
}

/// testdata/models/lr20: a Triton-layout model.
fn lr() -> ModelInfo {
    info(
        "lr",
        vec![spec("X", DataType::Fp32, &[-1, 20])],
        vec![spec("label", DataType::Int64, &[-1]), spec("probabilities", DataType::Fp32, &[-1, 3])],
        None,
    )
}

/// examples/iris-mlflow: an MLflow model with four double columns feeding one graph input.
fn iris_mlflow() -> ModelInfo {
    let column = |name: &str| ColumnSpec { name: Some(name.into()), datatype: DataType::Fp64, required: true };
    let signature = MlflowSignature {
        inputs: Some(MlflowSchema::Columns(
            ["sepal_length", "sepal_width", "petal_length", "petal_width"].map(column).to_vec(),
        )),
        outputs: Some(MlflowSchema::Columns(vec![ColumnSpec {
            name: Some("label".into()),
            datatype: DataType::Int64,
            required: true,
        }])),
    };
    info(
        "iris",
        vec![spec("input", DataType::Fp32, &[-1, 4])],
        vec![spec("label", DataType::Int64, &[-1]), spec("probabilities", DataType::Fp32, &[-1, 3])],
        Some(signature),
    )
}

fn tensor_mlflow() -> ModelInfo {
    let signature = MlflowSignature {
        inputs: Some(MlflowSchema::Tensors(vec![MlflowTensor {
            name: Some("input".into()),
            datatype: DataType::Fp32,
            shape: vec![-1, 4],
        }])),
        outputs: None,
    };
    ModelInfo { name: "tensors".into(), mlflow: Some(signature), ..iris_mlflow() }
}

fn set(infos: Vec<ModelInfo>) -> ModelSet {
    ModelSet::new(infos.into_iter().map(|i| LoadedModel::new(i, Vec::new())))
}

fn docs(infos: Vec<ModelInfo>) -> Vec<Value> {
    let models = set(infos);
    ALL.into_iter().map(|v| document(&models, v)).collect()
}

/// The schema named `name` in either format.
fn schema<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc.pointer(&format!("/definitions/{name}"))
        .or_else(|| doc.pointer(&format!("/components/schemas/{name}")))
        .unwrap_or_else(|| panic!("no schema {name} in {doc}"))
}

/// Every `$ref` points at something in the document, in that format's section.
fn check_refs(doc: &Value, prefix: &str) {
    fn walk(value: &Value, doc: &Value, prefix: &str, count: &mut usize) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(target)) = map.get("$ref") {
                    assert!(target.starts_with(prefix), "{target} is not under {prefix}");
                    assert!(doc.pointer(&target[1..]).is_some(), "{target} resolves to nothing");
                    *count += 1;
                }
                map.values().for_each(|v| walk(v, doc, prefix, count));
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, doc, prefix, count)),
            _ => {}
        }
    }
    let mut count = 0;
    walk(doc, doc, prefix, &mut count);
    assert!(count > 5, "only {count} references");
}

#[test]
fn versions_parse_as_azmlinfsrv_accepts_them() {
    assert_eq!(SwaggerVersion::parse("2"), Some(SwaggerVersion::V2));
    assert_eq!(SwaggerVersion::parse("2.0"), Some(SwaggerVersion::V2));
    assert_eq!(SwaggerVersion::parse("3"), Some(SwaggerVersion::V3));
    assert_eq!(SwaggerVersion::parse("3.0"), Some(SwaggerVersion::V3));
    assert_eq!(SwaggerVersion::parse("3.1"), Some(SwaggerVersion::V3_1));
    for bad in ["", "1", "3.2", "4", "v2", " 2"] {
        assert_eq!(SwaggerVersion::parse(bad), None, "{bad}");
    }
}

#[test]
fn formats_and_common_paths() {
    let [v2, v3, v31] = <[Value; 3]>::try_from(docs(vec![lr()])).unwrap();
    assert_eq!(v2["swagger"], "2.0");
    assert!(v2.get("openapi").is_none() && v2.get("components").is_none());
    assert_eq!(v3["openapi"], "3.0.3");
    assert_eq!(v31["openapi"], "3.1.0");
    for doc in [&v3, &v31] {
        assert!(doc.get("swagger").is_none() && doc.get("definitions").is_none());
        assert_eq!(doc["components"]["securitySchemes"]["Bearer"]["in"], "header");
        check_refs(doc, "#/components/schemas/");
    }
    check_refs(&v2, "#/definitions/");
    assert_eq!(v2["securityDefinitions"]["Bearer"]["name"], "Authorization");
    for doc in [&v2, &v3, &v31] {
        assert_eq!(doc["info"]["title"], "lr");
        assert_eq!(doc["info"]["version"], "1");
        let description = doc["info"]["description"].as_str().unwrap();
        assert!(description.contains("ONNX model: 'lr' version 1 (Triton layout)"), "{description}");
        let paths: Vec<&str> = doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
        for path in [
            "/",
            "/score",
            "/swagger.json",
            "/v2/health/live",
            "/v2/health/ready",
            "/v2/models/{model}",
            "/v2/models/{model}/ready",
            "/v2/models/{model}/infer",
        ] {
            assert!(paths.contains(&path), "{path} missing from {paths:?}");
        }
        assert_eq!(doc["paths"]["/"]["get"]["operationId"], "ServiceHealthCheck");
        assert_eq!(doc["paths"]["/score"]["post"]["operationId"], "RunMLService");
        assert_eq!(doc["paths"]["/score"]["post"]["security"], json!([{"Bearer": []}]));
        assert_eq!(doc["paths"]["/swagger.json"]["get"]["operationId"], "GetSwaggerSpec");
        assert_eq!(doc["paths"]["/v2/models/{model}/infer"]["post"]["operationId"], "ModelInfer");
        assert_eq!(schema(doc, "ErrorResponse")["properties"]["message"]["type"], "string");
        assert_eq!(schema(doc, "V2ErrorResponse")["properties"]["error"]["type"], "string");
    }
    // Swagger 2.0: a body parameter and inlined path parameters; OpenAPI 3: requestBody and parameter schemas.
    let score = &v2["paths"]["/score"]["post"];
    assert_eq!(score["parameters"][0]["in"], "body");
    assert_eq!(score["parameters"][0]["schema"]["$ref"], "#/definitions/ServiceInput");
    assert_eq!(score["responses"]["200"]["schema"]["$ref"], "#/definitions/ServiceOutput");
    let model = &v2["paths"]["/v2/models/{model}/infer"]["post"]["parameters"][0];
    assert_eq!(
        model,
        &json!({"name": "model", "in": "path", "required": true, "description": "The model's name.", "type": "string", "enum": ["lr"]})
    );
    let score = &v3["paths"]["/score"]["post"];
    assert_eq!(
        score["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ServiceInput"
    );
    assert_eq!(
        score["responses"]["200"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/ServiceOutput"
    );
    let model = &v3["paths"]["/v2/models/{model}"]["get"]["parameters"][0];
    assert_eq!(model["schema"], json!({"type": "string", "enum": ["lr"]}));
    assert_eq!(v3["paths"]["/"]["get"]["responses"]["200"]["content"]["text/plain"]["example"], "Healthy");
    // 3.1 is the 3.0 document relabelled, as azmlinfsrv serves it.
    let mut relabelled = v31.clone();
    relabelled["openapi"] = json!("3.0.3");
    assert_eq!(relabelled, v3);
}

#[test]
fn a_triton_model_scores_with_the_v2_body() {
    for doc in docs(vec![lr()]) {
        let input = schema(&doc, "ServiceInput");
        assert_eq!(input, schema(&doc, "V2InferenceRequest"));
        assert_eq!(schema(&doc, "ServiceOutput"), schema(&doc, "V2InferenceResponse"));
        assert_eq!(
            input["example"],
            json!({"inputs": [{"name": "X", "shape": [1, 20], "datatype": "FP32", "data": vec![0.0; 20]}]})
        );
        let tensor = schema(&doc, "V2RequestInput");
        assert_eq!(tensor["properties"]["name"]["enum"], json!(["X"]));
        assert_eq!(tensor["properties"]["datatype"]["enum"], json!(["FP32"]));
        assert!(tensor["description"].as_str().unwrap().contains("X: FP32 [-1, 20]"), "{tensor}");
        assert_eq!(schema(&doc, "V2RequestOutput")["properties"]["name"]["enum"], json!(["label", "probabilities"]));
        assert_eq!(
            schema(&doc, "V2ModelMetadata")["example"],
            json!({
                "name": "lr", "versions": ["1"], "platform": "onnxruntime_onnx",
                "inputs": [{"name": "X", "datatype": "FP32", "shape": [-1, 20]}],
                "outputs": [
                    {"name": "label", "datatype": "INT64", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
                ],
            })
        );
        // /score forwards to the v2 handler, so its errors are {"error": ...}.
        let errors = doc["paths"]["/score"]["post"]["responses"]["default"].to_string();
        assert!(errors.contains("V2ErrorResponse"), "{errors}");
    }
}

#[test]
fn a_column_signature_gives_the_split_orient() {
    for doc in docs(vec![iris_mlflow()]) {
        let input = schema(&doc, "ServiceInput");
        assert_eq!(input["required"], json!(["input_data"]));
        let frame = &input["properties"]["input_data"];
        assert_eq!(frame["format"], "pandas.DataFrame:split");
        assert_eq!(frame["required"], json!(["columns", "index", "data"]));
        let names = json!(["sepal_length", "sepal_width", "petal_length", "petal_width"]);
        assert_eq!(frame["properties"]["columns"]["items"], json!({"type": "string", "enum": names}));
        assert_eq!(frame["properties"]["data"]["items"]["items"], json!({"type": "number", "format": "double"}));
        assert!(frame["description"].as_str().unwrap().contains("with the columns sepal_length (double), "), "{frame}");
        let example = json!({"columns": names, "index": [0], "data": [[0.0, 0.0, 0.0, 0.0]]});
        assert_eq!(frame["example"], example);
        assert_eq!(input["example"], json!({ "input_data": example }));
        // Records, with the outputs the signature names.
        let output = schema(&doc, "ServiceOutput");
        assert_eq!(output["type"], "array");
        assert_eq!(output["items"]["properties"], json!({"label": {"type": "integer", "format": "int64"}}));
        let errors = doc["paths"]["/score"]["post"]["responses"]["default"].to_string();
        assert!(errors.contains("/ErrorResponse"), "{errors}");
    }
}

#[test]
fn mixed_columns_and_unsigned_outputs() {
    let mut model = iris_mlflow();
    let column = |name: &str, datatype| ColumnSpec { name: Some(name.into()), datatype, required: true };
    model.mlflow = Some(MlflowSignature {
        inputs: Some(MlflowSchema::Columns(vec![column("a", DataType::Int64), column("b", DataType::Fp32)])),
        outputs: None,
    });
    let doc = &docs(vec![model.clone()])[0];
    let frame = &schema(doc, "ServiceInput")["properties"]["input_data"];
    assert_eq!(frame["properties"]["data"]["items"]["items"], json!({"type": "number"}));
    assert_eq!(schema(doc, "ServiceInput")["example"]["input_data"]["data"], json!([[0, 0.0]]));
    // No signature outputs: every graph output, a list per row for the wider one.
    let output = &schema(doc, "ServiceOutput")["items"]["properties"];
    assert_eq!(output["label"], json!({"type": "integer", "format": "int64"}));
    assert_eq!(
        output["probabilities"],
        json!({"type": "array", "minItems": 3, "maxItems": 3, "items": {"type": "number", "format": "float"}})
    );

    model.mlflow = Some(MlflowSignature {
        inputs: Some(MlflowSchema::Columns(vec![column("a", DataType::Bytes), column("b", DataType::Bool)])),
        outputs: None,
    });
    let doc = &docs(vec![model])[0];
    let frame = &schema(doc, "ServiceInput")["properties"]["input_data"];
    assert!(frame["properties"]["data"]["items"]["items"].get("type").is_none());
    assert_eq!(schema(doc, "ServiceInput")["example"]["input_data"]["data"], json!([["", false]]));
}

#[test]
fn tensor_signatures_give_named_tensors() {
    for doc in docs(vec![tensor_mlflow()]) {
        let input = schema(&doc, "ServiceInput");
        let named = &input["properties"]["input_data"];
        assert_eq!(named["required"], json!(["input"]));
        assert_eq!(named["additionalProperties"], false);
        let tensor = &named["properties"]["input"];
        assert_eq!(tensor["type"], "array");
        assert!(tensor.get("minItems").is_none(), "the batch dimension is free");
        assert_eq!(
            tensor["items"],
            json!({"type": "array", "minItems": 4, "maxItems": 4, "items": {"type": "number", "format": "float"}})
        );
        assert!(tensor["description"].as_str().unwrap().contains("FP32 tensor of shape [-1, 4]"), "{tensor}");
        assert_eq!(input["example"], json!({"input_data": {"input": [[0.0, 0.0, 0.0, 0.0]]}}));
        // Two outputs: an object of tensors by name.
        let output = schema(&doc, "ServiceOutput");
        assert_eq!(output["properties"]["label"]["items"], json!({"type": "integer", "format": "int64"}));
        assert_eq!(output["properties"]["probabilities"]["items"]["maxItems"], 3);
    }
    // One output: the bare tensor.
    let mut model = tensor_mlflow();
    model.outputs.truncate(1);
    let doc = &docs(vec![model])[0];
    assert_eq!(schema(doc, "ServiceOutput")["items"], json!({"type": "integer", "format": "int64"}));
}

#[test]
fn element_types_and_scalars() {
    let inputs = vec![
        spec("flag", DataType::Bool, &[]),
        spec("text", DataType::Bytes, &[2]),
        spec("small", DataType::Uint8, &[-1, 2, 1]),
        spec("id", DataType::Int8, &[1]),
    ];
    let model = info("kinds", inputs, vec![spec("out", DataType::Fp64, &[])], Some(MlflowSignature::default()));
    let doc = &docs(vec![model])[0];
    let input = schema(doc, "ServiceInput");
    let properties = &input["properties"]["input_data"]["properties"];
    assert_eq!(properties["flag"]["type"], "boolean");
    assert_eq!(properties["text"]["items"], json!({"type": "string"}));
    assert_eq!(
        properties["small"]["items"]["items"]["items"],
        json!({"type": "integer", "format": "int32", "minimum": 0, "maximum": 255})
    );
    assert_eq!(properties["id"]["items"]["minimum"], -128);
    assert_eq!(
        input["example"]["input_data"],
        json!({"flag": false, "text": ["", ""], "small": [[[0], [0]]], "id": [0]})
    );
    assert_eq!(schema(doc, "ServiceOutput")["type"], "number");
}

#[test]
fn several_models_enumerate_on_the_v2_paths_and_leave_out_score() {
    let cnn = info(
        "cnn",
        vec![spec("image", DataType::Fp32, &[-1, 1, 28, 28])],
        vec![spec("probs", DataType::Fp32, &[-1, 10])],
        None,
    );
    let [v2, v3, _] = <[Value; 3]>::try_from(docs(vec![lr(), cnn])).unwrap();
    for doc in [&v2, &v3] {
        assert!(doc["paths"].get("/score").is_none());
        assert!(doc.pointer("/definitions/ServiceInput").is_none());
        assert!(doc.pointer("/components/schemas/ServiceInput").is_none());
        assert_eq!(doc["info"]["title"], "cnn, lr");
        assert!(doc["info"]["description"].as_str().unwrap().contains("/score is not available"));
        assert_eq!(schema(doc, "V2RequestInput")["properties"]["name"]["enum"], json!(["image", "X"]));
        // The first model by name gives the schema examples.
        assert_eq!(schema(doc, "V2InferenceRequest")["example"]["inputs"][0]["shape"], json!([1, 1, 28, 28]));
        assert_eq!(schema(doc, "V2ModelMetadata")["example"]["name"], "cnn");
    }
    assert_eq!(v2["paths"]["/v2/models/{model}/infer"]["post"]["parameters"][0]["enum"], json!(["cnn", "lr"]));
    let infer = &v3["paths"]["/v2/models/{model}/infer"]["post"];
    assert_eq!(infer["parameters"][0]["schema"]["enum"], json!(["cnn", "lr"]));
    let examples = &infer["requestBody"]["content"]["application/json"]["examples"];
    assert_eq!(examples["lr"]["value"]["inputs"][0]["data"], json!(vec![0.0; 20]));
    assert_eq!(examples["cnn"]["value"]["inputs"][0]["data"].as_array().map(Vec::len), Some(784));
}

#[test]
fn big_inputs_get_no_example() {
    let model = info(
        "big",
        vec![spec("image", DataType::Fp32, &[-1, 3, 224, 224])],
        vec![spec("out", DataType::Fp32, &[-1, 1000])],
        None,
    );
    for doc in docs(vec![model.clone()]) {
        assert!(schema(&doc, "V2InferenceRequest").get("example").is_none());
    }
    let model = ModelInfo { mlflow: Some(MlflowSignature::default()), ..model };
    for doc in docs(vec![model]) {
        let input = schema(&doc, "ServiceInput");
        assert!(input.get("example").is_none(), "{input}");
        assert_eq!(input["properties"]["input_data"]["properties"]["image"]["items"]["maxItems"], 3);
    }
}
