"""summary_only-style driver (as azureml-examples' custom-outputs-parquet): writes one file per
input under $AZUREML_BI_OUTPUT_PATH and returns the mini-batch."""
import os


def init():
    global boot_output
    boot_output = os.environ["AZUREML_BI_OUTPUT_PATH"]  # read in init(), as the Azure example does


def run(mini_batch):
    out_dir = os.environ["AZUREML_BI_OUTPUT_PATH"]
    for path in mini_batch:
        name = os.path.splitext(os.path.basename(path))[0] + ".out"
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            f.write(f"{path} boot={boot_output}\n")
    return mini_batch
