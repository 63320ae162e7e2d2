//! The instruction sets llama.cpp is compiled for, chosen from the CPU (never AVX-512 or AMX),
//! and the build record kept in the install marker.

use serde::{Deserialize, Serialize};

use super::LLAMA_CPP_PYTHON_VERSION;

/// Which instruction sets llama.cpp is compiled for. Never AVX-512 or AMX: those code paths
/// crashed llama.cpp on such CPUs, and AVX2 is as fast for a model this small.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildVariant {
    /// x86-64 with SSE4.2, AVX, AVX2, BMI2, FMA and F16C (Haswell and later, Zen and later).
    X86Avx2,
    /// Plain x86-64 (SSE2), for CPUs without AVX2/FMA/F16C.
    X86Baseline,
    /// Another architecture: llama.cpp's portable (non-native) defaults.
    Generic,
}

/// Flags that turn off what may crash, whatever else the variant enables.
const NEVER: &str = "-DGGML_AVX512=OFF -DGGML_AVX512_VBMI=OFF -DGGML_AVX512_VNNI=OFF \
-DGGML_AVX512_BF16=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF \
-DGGML_AMX_BF16=OFF";

impl BuildVariant {
    /// The variant for the CPU this runs on.
    pub fn for_host() -> BuildVariant {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::arch::is_x86_feature_detected!("sse4.2")
                && std::arch::is_x86_feature_detected!("avx")
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("bmi2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c");
            if avx2 {
                BuildVariant::X86Avx2
            } else {
                BuildVariant::X86Baseline
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            BuildVariant::Generic
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BuildVariant::X86Avx2 => "x86-64-avx2",
            BuildVariant::X86Baseline => "x86-64-baseline",
            BuildVariant::Generic => "generic",
        }
    }

    /// `CMAKE_ARGS` for llama-cpp-python's build. The multimodal library (llava/mtmd) is left
    /// out: the server does not need it for a text model, and it is a third of the build.
    pub fn cmake_args(self) -> String {
        let isa = match self {
            BuildVariant::X86Avx2 => {
                "-DGGML_SSE42=ON -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_BMI2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
            }
            BuildVariant::X86Baseline => {
                "-DGGML_SSE42=OFF -DGGML_AVX=OFF -DGGML_AVX2=OFF -DGGML_BMI2=OFF -DGGML_FMA=OFF -DGGML_F16C=OFF"
            }
            BuildVariant::Generic => "",
        };
        let never = if self == BuildVariant::Generic {
            ""
        } else {
            NEVER
        };
        format!("-DGGML_NATIVE=OFF {isa} {never} -DLLAVA_BUILD=OFF")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What an install built, kept in the venv: an install whose marker differs from what this
/// host wants (or has none, as the old native builds) is rebuilt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildInfo {
    pub llama_cpp_python: String,
    pub variant: String,
    pub cmake_args: String,
    /// llama.cpp's own report of the instruction sets it uses (`llama_print_system_info`).
    #[serde(default)]
    pub system_info: String,
}

impl BuildInfo {
    pub(super) fn wanted(variant: BuildVariant) -> BuildInfo {
        BuildInfo {
            llama_cpp_python: LLAMA_CPP_PYTHON_VERSION.to_owned(),
            variant: variant.name().to_owned(),
            cmake_args: variant.cmake_args(),
            system_info: String::new(),
        }
    }

    pub(super) fn same_build(&self, other: &BuildInfo) -> bool {
        (&self.llama_cpp_python, &self.variant, &self.cmake_args)
            == (&other.llama_cpp_python, &other.variant, &other.cmake_args)
    }
}

/// An instruction set llama.cpp reports using that this build must leave out.
pub(super) fn forbidden_feature(system_info: &str) -> Option<String> {
    system_info
        .split('|')
        .filter_map(|part| part.split_once('='))
        .map(|(k, v)| (k.trim().trim_start_matches("CPU :").trim(), v.trim()))
        .find(|(k, v)| (k.starts_with("AVX512") || k.starts_with("AMX")) && *v == "1")
        .map(|(k, _)| k.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_variant_builds_avx512_or_amx() {
        for v in [
            BuildVariant::X86Avx2,
            BuildVariant::X86Baseline,
            BuildVariant::Generic,
        ] {
            let args = v.cmake_args();
            assert!(args.contains("-DGGML_NATIVE=OFF"), "{args}");
            assert!(!args.contains("AVX512=ON") && !args.contains("AMX_INT8=ON"));
        }
        assert!(
            BuildVariant::X86Avx2
                .cmake_args()
                .contains("-DGGML_AVX512=OFF")
        );
        assert!(
            BuildVariant::X86Baseline
                .cmake_args()
                .contains("-DGGML_AVX2=OFF")
        );
        assert_ne!(
            BuildVariant::X86Avx2.cmake_args(),
            BuildVariant::X86Baseline.cmake_args()
        );
    }

    #[test]
    fn system_info_with_avx512_or_amx_is_refused() {
        let ok = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | OPENMP = 1 | REPACK = 1 |";
        assert_eq!(forbidden_feature(ok), None);
        let bad = "CPU : SSE3 = 1 | AVX2 = 1 | AVX512 = 1 | AVX512_VBMI = 1 | OPENMP = 1 |";
        assert_eq!(forbidden_feature(bad).as_deref(), Some("AVX512"));
        let amx = "CPU : AVX2 = 1 | AMX_INT8 = 1 |";
        assert_eq!(forbidden_feature(amx).as_deref(), Some("AMX_INT8"));
    }
}
