//! A small L-BFGS minimiser (two-loop recursion, backtracking Armijo line search) for smooth
//! objectives such as Cerebro's penalised likelihoods. Deterministic: the same objective and
//! start give the same result on every machine.

/// How long to search.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    pub max_iter: usize,
    /// Stop when the gradient's largest component falls below this.
    pub grad_tol: f64,
    /// Stop when an iteration improves the objective by less than this, relatively.
    pub rel_tol: f64,
    /// Correction pairs kept.
    pub memory: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_iter: 500,
            grad_tol: 1e-5,
            rel_tol: 1e-9,
            memory: 10,
        }
    }
}

/// Where the search ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Minimum {
    pub x: Vec<f64>,
    pub value: f64,
    pub iterations: usize,
    pub converged: bool,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Minimises `f`, which returns the value at `x` and writes the gradient into its third
/// argument, starting from `x0`.
pub fn minimize<F>(mut f: F, x0: Vec<f64>, opts: Options) -> Minimum
where
    F: FnMut(&[f64], &mut [f64]) -> f64,
{
    let n = x0.len();
    let mut x = x0;
    let mut g = vec![0.0; n];
    let mut value = f(&x, &mut g);
    let mut history: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> =
        std::collections::VecDeque::new();
    let mut x_new = vec![0.0; n];
    let mut g_new = vec![0.0; n];
    for iter in 0..opts.max_iter {
        if g.iter().fold(0.0f64, |m, v| m.max(v.abs())) < opts.grad_tol {
            return Minimum {
                x,
                value,
                iterations: iter,
                converged: true,
            };
        }
        // Two-loop recursion: d = -H g.
        let mut d: Vec<f64> = g.iter().map(|v| -v).collect();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, y, rho) in history.iter().rev() {
            let a = rho * dot(s, &d);
            for (di, yi) in d.iter_mut().zip(y) {
                *di -= a * yi;
            }
            alphas.push(a);
        }
        if let Some((s, y, _)) = history.back() {
            let gamma = dot(s, y) / dot(y, y);
            d.iter_mut().for_each(|v| *v *= gamma);
        } else {
            // First step: a unit-length move along the steepest descent.
            let norm = dot(&g, &g).sqrt().max(1e-12);
            d.iter_mut().for_each(|v| *v /= norm);
        }
        for ((s, y, rho), a) in history.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &d);
            for (di, si) in d.iter_mut().zip(s) {
                *di += (a - b) * si;
            }
        }
        let mut slope = dot(&g, &d);
        if slope >= 0.0 {
            // Not a descent direction (curvature lost): restart from steepest descent.
            history.clear();
            d = g.iter().map(|v| -v).collect();
            slope = -dot(&g, &g);
        }
        let mut step = 1.0;
        let mut accepted = false;
        for _ in 0..40 {
            for ((xn, xi), di) in x_new.iter_mut().zip(&x).zip(&d) {
                *xn = xi + step * di;
            }
            let v = f(&x_new, &mut g_new);
            if v.is_finite() && v <= value + 1e-4 * step * slope {
                let s: Vec<f64> = x_new.iter().zip(&x).map(|(a, b)| a - b).collect();
                let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
                let sy = dot(&s, &y);
                if sy > 1e-12 {
                    if history.len() == opts.memory {
                        history.pop_front();
                    }
                    history.push_back((s, y, 1.0 / sy));
                }
                let improved = value - v;
                std::mem::swap(&mut x, &mut x_new);
                std::mem::swap(&mut g, &mut g_new);
                value = v;
                accepted = true;
                if improved <= opts.rel_tol * value.abs().max(1.0) {
                    return Minimum {
                        x,
                        value,
                        iterations: iter + 1,
                        converged: true,
                    };
                }
                break;
            }
            step *= 0.5;
        }
        if !accepted {
            return Minimum {
                x,
                value,
                iterations: iter + 1,
                converged: false,
            };
        }
    }
    Minimum {
        x,
        value,
        iterations: opts.max_iter,
        converged: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_minimum_of_a_skewed_quadratic() {
        // f = sum_i (i+1) (x_i - i)^2, minimum at x_i = i.
        let f = |x: &[f64], g: &mut [f64]| {
            let mut v = 0.0;
            for (i, (xi, gi)) in x.iter().zip(g.iter_mut()).enumerate() {
                let c = (i + 1) as f64;
                v += c * (xi - i as f64).powi(2);
                *gi = 2.0 * c * (xi - i as f64);
            }
            v
        };
        let m = minimize(f, vec![0.0; 20], Options::default());
        assert!(m.converged);
        for (i, xi) in m.x.iter().enumerate() {
            assert!((xi - i as f64).abs() < 1e-5, "x[{i}] = {xi}");
        }
    }

    #[test]
    fn finds_the_rosenbrock_valley_floor() {
        let f = |x: &[f64], g: &mut [f64]| {
            let (a, b) = (x[0], x[1]);
            g[0] = -2.0 * (1.0 - a) - 400.0 * a * (b - a * a);
            g[1] = 200.0 * (b - a * a);
            (1.0 - a).powi(2) + 100.0 * (b - a * a).powi(2)
        };
        let opts = Options {
            max_iter: 2000,
            grad_tol: 1e-8,
            rel_tol: 0.0,
            ..Options::default()
        };
        let m = minimize(f, vec![-1.2, 1.0], opts);
        assert!(
            (m.x[0] - 1.0).abs() < 1e-4 && (m.x[1] - 1.0).abs() < 1e-4,
            "{m:?}"
        );
    }
}
