//! Dynamic batching's data work: which queued jobs may run together, concatenating their inputs along the first
//! (batch) dimension, and splitting the outputs back by each job's rows. The pool decides when to batch.

use crate::infer::InferenceJob;
use crate::tensor::NamedTensor;

/// The rows (size of the first dimension) of a checked job of a batching model.
pub(crate) fn rows(job: &InferenceJob) -> Option<usize> {
    job.inputs.first()?.shape.first().and_then(|d| usize::try_from(*d).ok())
}

/// Whether `job` can run in one batch with `first`: the same outputs asked for, and the same inputs with the same
/// element types and the same dimensions after the first.
pub(crate) fn compatible(first: &InferenceJob, job: &InferenceJob) -> bool {
    first.outputs == job.outputs
        && first.inputs.len() == job.inputs.len()
        && first.inputs.iter().all(|a| {
            job.inputs.iter().any(|b| {
                b.name == a.name && b.data.datatype() == a.data.datatype() && b.shape.get(1..) == a.shape.get(1..)
            })
        })
}

/// Concatenates compatible jobs along the first dimension, in order (inputs in the first job's order).
pub(crate) fn merge(jobs: Vec<InferenceJob>) -> Option<InferenceJob> {
    let mut jobs = jobs.into_iter();
    let mut merged = jobs.next()?;
    for job in jobs {
        for input in job.inputs {
            let target = merged.inputs.iter_mut().find(|t| t.name == input.name)?;
            let rows = *input.shape.first()?;
            if !target.data.append(input.data) {
                return None;
            }
            *target.shape.first_mut()? += rows;
        }
    }
    Some(merged)
}

/// Splits a batch's outputs into one list per job, by each job's `rows`; `None` if an output does not have the
/// whole batch as its first dimension (dynamic batching needs that of every output, as in Triton).
pub(crate) fn split(outputs: Vec<NamedTensor>, rows: &[usize]) -> Option<Vec<Vec<NamedTensor>>> {
    let total: usize = rows.iter().sum();
    let mut per_job: Vec<Vec<NamedTensor>> = rows.iter().map(|_| Vec::with_capacity(outputs.len())).collect();
    for output in outputs {
        if total == 0 || usize::try_from(*output.shape.first()?).ok()? != total || output.data.len() % total != 0 {
            return None;
        }
        let per_row = output.data.len() / total;
        let counts: Vec<usize> = rows.iter().map(|r| r * per_row).collect();
        let parts = output.data.split(&counts)?;
        for ((list, data), r) in per_job.iter_mut().zip(parts).zip(rows) {
            let mut shape = output.shape.clone();
            shape[0] = i64::try_from(*r).ok()?;
            list.push(NamedTensor { name: output.name.clone(), shape, data });
        }
    }
    Some(per_job)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::TensorData;

    fn job(rows: i64, first: f32) -> InferenceJob {
        let data: Vec<f32> = (0..rows * 2).map(|i| first + i as f32).collect();
        InferenceJob {
            inputs: vec![
                NamedTensor { name: "b".into(), shape: vec![rows, 1], data: TensorData::Int64(vec![7; rows as usize]) },
                NamedTensor { name: "a".into(), shape: vec![rows, 2], data: data.into() },
            ],
            outputs: vec![],
        }
    }

    #[test]
    fn compatible_jobs_merge_in_order_and_split_back() {
        let (one, two) = (job(1, 0.0), job(2, 10.0));
        let mut reordered = two.clone();
        reordered.inputs.reverse();
        assert!(compatible(&one, &reordered), "input order does not matter");
        let merged = merge(vec![one, reordered]).unwrap();
        assert_eq!(merged.inputs[1].shape, vec![3, 2]);
        assert_eq!(merged.inputs[1].data, TensorData::Fp32(vec![0.0, 1.0, 10.0, 11.0, 12.0, 13.0]));
        assert_eq!(merged.inputs[0].shape, vec![3, 1]);

        let outputs = vec![NamedTensor { name: "y".into(), shape: vec![3], data: TensorData::Int64(vec![1, 2, 3]) }];
        let parts = split(outputs, &[1, 2]).unwrap();
        assert_eq!(parts[0][0].shape, vec![1]);
        assert_eq!(parts[1][0].data, TensorData::Int64(vec![2, 3]));
        assert_eq!(parts[1][0].shape, vec![2]);
    }

    #[test]
    fn incompatible_jobs_and_unbatched_outputs_are_refused() {
        let one = job(1, 0.0);
        let mut other_dims = job(1, 0.0);
        other_dims.inputs[1] = NamedTensor { name: "a".into(), shape: vec![1, 3], data: vec![0f32; 3].into() };
        assert!(!compatible(&one, &other_dims));
        let mut other_outputs = job(1, 0.0);
        other_outputs.outputs = vec!["y".into()];
        assert!(!compatible(&one, &other_outputs));
        let mut other_type = job(1, 0.0);
        other_type.inputs[0].data = TensorData::Int32(vec![7]);
        assert!(!compatible(&one, &other_type));

        let summed = vec![NamedTensor { name: "y".into(), shape: vec![1], data: TensorData::Fp32(vec![1.0]) }];
        assert!(split(summed, &[1, 2]).is_none(), "an output without the batch dimension cannot be split");
    }
}
