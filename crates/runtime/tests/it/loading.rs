//! Model folders that cannot be served: the error names the file and says what is wrong.

use std::fs;
use std::path::Path;

use sluice_runtime::ModelFormat;
use sluice_runtime::model::LoadOptions;

use crate::support::{example, load};

/// A copy of the iris repository in a temporary folder, to break in various ways.
fn iris_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = example("examples/iris/model_repository/iris");
    fs::create_dir_all(dir.path().join("iris/1")).expect("mkdir");
    fs::copy(source.join("config.pbtxt"), dir.path().join("iris/config.pbtxt")).expect("copy config");
    fs::copy(source.join("1/model.onnx"), dir.path().join("iris/1/model.onnx")).expect("copy model");
    dir
}

fn load_error(format: ModelFormat, dir: &Path) -> String {
    match load(format, dir, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn edit_config(dir: &Path, from: &str, to: &str) {
    let path = dir.join("iris/config.pbtxt");
    let text = fs::read_to_string(&path).expect("read config");
    fs::write(&path, text.replace(from, to)).expect("write config");
}

#[test]
fn config_mismatches_name_the_field() {
    let repo = iris_copy();
    edit_config(repo.path(), "name: \"input\"", "name: \"x\"");
    let e = load_error(ModelFormat::Triton, repo.path());
    assert!(e.ends_with("config.pbtxt: config.pbtxt input 'x' not in the ONNX graph (graph inputs: input)"), "{e}");

    let repo = iris_copy();
    edit_config(repo.path(), "TYPE_FP32", "TYPE_FP64");
    let e = load_error(ModelFormat::Triton, repo.path());
    assert!(e.contains("input 'input' has data_type TYPE_FP64 but the ONNX graph says FP32"), "{e}");

    let repo = iris_copy();
    edit_config(repo.path(), "dims: [ -1, 4 ]", "dims: [ -1, 5 ]");
    let e = load_error(ModelFormat::Triton, repo.path());
    assert!(e.contains("has dims [-1, 5] but the ONNX graph shape is [-1, 4]"), "{e}");

    let repo = iris_copy();
    edit_config(repo.path(), "max_batch_size: 0", "max_batch_size: 0\ninput [ { name: \"a\" dims: [1] } ]");
    let e = load_error(ModelFormat::Triton, repo.path());
    assert!(e.contains("config.pbtxt: line"), "{e}");
}

#[test]
fn missing_files_are_named() {
    let repo = iris_copy();
    fs::remove_file(repo.path().join("iris/1/model.onnx")).expect("rm");
    let e = load_error(ModelFormat::Triton, repo.path());
    assert_eq!(e, format!("model.onnx not found under {}", repo.path().join("iris/1").display()));

    let empty = tempfile::tempdir().expect("tempdir");
    assert!(load_error(ModelFormat::Triton, empty.path()).contains("no models found"));
    let e = load_error(ModelFormat::Mlflow, empty.path());
    assert!(e.contains("MLmodel not found under"), "{e}");
}

#[test]
fn config_is_optional_and_latest_version_wins() {
    let repo = iris_copy();
    fs::remove_file(repo.path().join("iris/config.pbtxt")).expect("rm");
    fs::create_dir_all(repo.path().join("iris/10")).expect("mkdir");
    fs::copy(repo.path().join("iris/1/model.onnx"), repo.path().join("iris/10/model.onnx")).expect("copy");
    fs::create_dir_all(repo.path().join("iris/9")).expect("mkdir");
    let models = load(ModelFormat::Triton, repo.path(), &LoadOptions::default()).expect("loads");
    let iris = models.get("iris").expect("iris");
    assert_eq!(iris.info.version, "10");
    assert_eq!(iris.info.inputs[0].shape, vec![-1, 4]);
    assert_eq!(iris.info.outputs.len(), 2);
}
