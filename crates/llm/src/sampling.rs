//! Per-sequence token sampling on raw logits: greedy at temperature 0, otherwise
//! temperature + nucleus (top-p) sampling with a seeded RNG.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub(crate) struct Sampler {
    temperature: f32,
    top_p: f32,
    rng: StdRng,
    probs: Vec<f32>,
    order: Vec<u32>,
}

impl Sampler {
    pub(crate) fn new(temperature: f32, top_p: f32, seed: u64) -> Self {
        let top_p = if top_p.is_finite() && top_p > 0.0 { top_p.min(1.0) } else { 1.0 };
        Sampler {
            temperature: if temperature.is_finite() { temperature.max(0.0) } else { 0.0 },
            top_p,
            rng: StdRng::seed_from_u64(seed),
            probs: Vec::new(),
            order: Vec::new(),
        }
    }

    /// Picks the next token index from `logits`.
    pub(crate) fn sample(&mut self, logits: &[f32]) -> usize {
        if self.temperature <= 1e-6 {
            return argmax(logits);
        }
        let inv_t = 1.0 / self.temperature;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        self.probs.clear();
        let mut sum = 0.0f64;
        for &l in logits {
            let p = ((l - max) * inv_t).exp();
            sum += f64::from(p);
            self.probs.push(p);
        }
        let norm = (1.0 / sum) as f32;
        for p in &mut self.probs {
            *p *= norm;
        }
        let r: f32 = self.rng.random::<f32>();
        if self.top_p >= 1.0 {
            return pick(self.probs.iter().enumerate().map(|(i, &p)| (i, p)), 1.0, r).unwrap_or_else(|| argmax(logits));
        }
        // Nucleus: the smallest set of most likely tokens whose mass reaches top_p. Sorting
        // the whole vocabulary every step is slow, so sort only tokens above a small
        // threshold when they already carry enough mass (the nucleus is then among them).
        let threshold = 1e-5f32;
        self.order.clear();
        let mut mass = 0.0f32;
        for (i, &p) in self.probs.iter().enumerate() {
            if p >= threshold {
                self.order.push(i as u32);
                mass += p;
            }
        }
        if mass < self.top_p {
            self.order.clear();
            self.order.extend(0..self.probs.len() as u32);
        }
        let probs = &self.probs;
        self.order.sort_by(|&a, &b| probs[b as usize].total_cmp(&probs[a as usize]).then(a.cmp(&b)));
        let mut kept = 0usize;
        let mut cum = 0.0f32;
        for &i in &self.order {
            cum += probs[i as usize];
            kept += 1;
            if cum >= self.top_p {
                break;
            }
        }
        let nucleus = &self.order[..kept];
        pick(nucleus.iter().map(|&i| (i as usize, probs[i as usize])), cum, r).unwrap_or(nucleus[0] as usize)
    }
}

/// Index of the largest logit (lowest index on ties).
pub(crate) fn argmax(logits: &[f32]) -> usize {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best_v = v;
            best = i;
        }
    }
    best
}

fn pick(items: impl Iterator<Item = (usize, f32)>, total: f32, r: f32) -> Option<usize> {
    let target = r * total;
    let mut acc = 0.0f32;
    let mut last = None;
    for (i, p) in items {
        acc += p;
        last = Some(i);
        if acc > target {
            return Some(i);
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_seeded() {
        let logits = vec![0.1, 3.0, 2.9, -1.0];
        assert_eq!(Sampler::new(0.0, 1.0, 1).sample(&logits), 1);
        let run = |seed| {
            let mut s = Sampler::new(1.0, 0.95, seed);
            (0..32).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert!(run(7).iter().all(|&t| t < 4));
        // top_p small keeps only the best token.
        let mut s = Sampler::new(1.0, 0.01, 3);
        assert!((0..20).all(|_| s.sample(&logits) == 1));
    }
}
