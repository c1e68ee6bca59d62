//! Parameters of the encrypted matching scheme: one explicit, versioned [`Params`] value.
//!
//! The GLWE part (dimension, polynomial size, modulus, noise) is taken from tfhe's audited
//! parameter set `V1_8_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128` rather than copied.
//! The gadget decomposition, the plaintext scaling and the quantisation are ours, chosen by
//! measured noise (see SECURITY.md and BENCHMARKS.md). Every serialized object carries the
//! `Params` it was made with, and loading checks it.

use serde::{Deserialize, Serialize};
use tfhe::core_crypto::prelude::{
    CiphertextModulus, DecompositionBaseLog, DecompositionLevelCount, DynamicDistribution,
    GlweDimension, GlweSize, PolynomialSize,
};
use tfhe::shortint::parameters::v1_8::V1_8_PARAM_MESSAGE_2_CARRY_2_KS_PBS_TUNIFORM_2M128 as AUDITED;

/// Version of the parameter set new keys use ([`Params::v1`] or [`Params::v2`]); a set's
/// version changes whenever any of its fields changes meaning or value.
pub const PARAMS_VERSION: u16 = 2;

/// Every parameter of the scheme, carried in every serialized object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Params {
    /// Version of this parameter set ([`PARAMS_VERSION`]).
    pub version: u16,
    /// GLWE dimension k (from the audited set).
    pub glwe_dimension: usize,
    /// Polynomial size N (from the audited set).
    pub polynomial_size: usize,
    /// log2 of the TUniform noise bound of fresh GLWE encryptions (from the audited set).
    pub noise_bound_log2: u32,
    /// Gadget decomposition of the probe GGSW: base 2^`decomp_base_log`...
    pub decomp_base_log: usize,
    /// ...with this many levels.
    pub decomp_level_count: usize,
    /// Plaintext scaling: values are encoded as `value * 2^delta_log` in the 64-bit torus.
    pub delta_log: u32,
    /// Template dimension D (SFace: 128).
    pub dim: usize,
    /// Quantised template values lie in [-q, q].
    pub q: i32,
    /// Float components are scaled by `q / (clip_milli / 1000)` before rounding, so a
    /// component of magnitude `clip_milli / 1000` maps to `q`; larger ones are clipped.
    pub clip_milli: u32,
}

impl Params {
    /// The parameter set of version 1.
    pub fn v1() -> Self {
        let noise_bound_log2 = match AUDITED.glwe_noise_distribution {
            DynamicDistribution::TUniform(t) => t.bound_log2(),
            // The audited set is TUniform; anything else means tfhe changed under us.
            DynamicDistribution::Gaussian(_) => {
                unreachable!("audited GLWE noise is TUniform in tfhe 1.8")
            }
        };
        Params {
            version: 1,
            glwe_dimension: AUDITED.glwe_dimension.0,
            polynomial_size: AUDITED.polynomial_size.0,
            noise_bound_log2,
            decomp_base_log: 11,
            decomp_level_count: 4,
            delta_log: 44,
            dim: 128,
            q: 31,
            clip_milli: 350,
        }
    }

    /// The parameter set of version 2 (compact templates): SFace embeddings projected to
    /// 80 dimensions (`vision::projection`), so W = 81 and 25 templates share a block
    /// (v1: 15). The GLWE part, gadget and Delta are v1's. q = 46 is the largest the
    /// decodable range allows at D = 80 (3 D q^2 < 2^(63 - delta_log), [`Params::validate`]);
    /// the clipping bound 0.45 is the 99.99th percentile of the projected components'
    /// magnitudes over LFW View 1 DevTrain (largest 0.509; `eval --fit-projection`), so a
    /// quantisation step of 0.0098 (v1: 0.0113).
    pub fn v2() -> Self {
        Params {
            version: 2,
            dim: 80,
            q: 46,
            clip_milli: 450,
            ..Params::v1()
        }
    }

    /// The parameter set of `version`, if this build knows it.
    pub fn of_version(version: u16) -> Option<Params> {
        match version {
            1 => Some(Params::v1()),
            2 => Some(Params::v2()),
            _ => None,
        }
    }

    /// The parameter set new keys use ([`PARAMS_VERSION`]).
    pub fn current() -> Params {
        Params::of_version(PARAMS_VERSION).expect("PARAMS_VERSION is a known version")
    }

    /// Every parameter set this build knows, oldest first.
    pub fn known() -> [Params; 2] {
        [Params::v1(), Params::v2()]
    }

    /// Slot width W: D template coefficients plus one norm coefficient.
    pub fn slot_width(&self) -> usize {
        self.dim + 1
    }

    /// Templates per GLWE block: floor(N / W).
    pub fn slots_per_block(&self) -> usize {
        self.polynomial_size / self.slot_width()
    }

    /// Coefficient index (in a result polynomial) where slot `j`'s distance lands.
    pub fn slot_readout(&self, j: usize) -> usize {
        j * self.slot_width() + self.dim
    }

    /// Bits of each block coefficient the external product reads: the gadget
    /// decomposition keeps the top `decomp_base_log * decomp_level_count` bits and rounds
    /// the rest away. The gallery stores block bodies at this precision (see
    /// `block::round_body`).
    pub fn body_bits(&self) -> u32 {
        (self.decomp_base_log * self.decomp_level_count) as u32
    }

    /// The plaintext scaling factor Delta.
    pub fn delta(&self) -> u64 {
        1u64 << self.delta_log
    }

    /// Quantisation scale: float component times this, rounded, gives the integer value.
    pub fn quant_scale(&self) -> f32 {
        self.q as f32 * 1000.0 / self.clip_milli as f32
    }

    /// Largest |value| the decoder can represent: 2^(63 - delta_log).
    pub fn max_decodable(&self) -> i64 {
        1i64 << (63 - self.delta_log)
    }

    /// Decoding margin: noise below Delta/2 rounds away.
    pub fn margin_log2(&self) -> u32 {
        self.delta_log - 1
    }

    pub(crate) fn glwe_size(&self) -> GlweSize {
        GlweDimension(self.glwe_dimension).to_glwe_size()
    }

    pub(crate) fn poly_size(&self) -> PolynomialSize {
        PolynomialSize(self.polynomial_size)
    }

    pub(crate) fn base_log(&self) -> DecompositionBaseLog {
        DecompositionBaseLog(self.decomp_base_log)
    }

    pub(crate) fn level_count(&self) -> DecompositionLevelCount {
        DecompositionLevelCount(self.decomp_level_count)
    }

    pub(crate) fn noise(&self) -> DynamicDistribution<u64> {
        DynamicDistribution::new_t_uniform(self.noise_bound_log2)
    }

    pub(crate) fn modulus(&self) -> CiphertextModulus<u64> {
        CiphertextModulus::new_native()
    }

    /// Checks the invariants the scheme relies on; `Params::v1()` passes, a value read from
    /// disk or the network is checked against the expected set instead.
    pub fn validate(&self) -> Result<(), String> {
        let w = self.slot_width();
        if self.glwe_dimension != 1 {
            return Err("only GLWE dimension 1 is supported".into());
        }
        if !self.polynomial_size.is_power_of_two() || self.polynomial_size < w {
            return Err("polynomial size must be a power of two holding one slot".into());
        }
        // The last slot's product reaches position (M-1)W + 2D; it may wrap negacyclically
        // but must not reach slot 0's readout at position D.
        let m = self.slots_per_block();
        let reach = (m - 1) * w + 2 * self.dim;
        if reach >= self.polynomial_size && reach - self.polynomial_size >= self.dim {
            return Err("slot layout wraps onto a readout coefficient".into());
        }
        // Largest |value| at a readout: 2*D*q^2 (cross term) + D*q^2 (gallery norm).
        let q2 = (self.q as i64) * (self.q as i64);
        if 3 * self.dim as i64 * q2 >= self.max_decodable() {
            return Err("Delta too large for the distance range".into());
        }
        if self.decomp_base_log * self.decomp_level_count > 64 {
            return Err("gadget exceeds the modulus".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_is_valid_and_matches_the_audited_glwe_part() {
        let p = Params::v1();
        p.validate().unwrap();
        assert_eq!(p.glwe_dimension, 1);
        assert_eq!(p.polynomial_size, 2048);
        assert_eq!(p.noise_bound_log2, 17);
        assert_eq!(p.slot_width(), 129);
        assert_eq!(p.slots_per_block(), 15);
        assert_eq!(p.slot_readout(0), 128);
        assert_eq!(p.slot_readout(14), 14 * 129 + 128);
    }

    #[test]
    fn v2_is_valid_packs_25_templates_and_q_is_the_largest_the_range_allows() {
        let p = Params::v2();
        p.validate().unwrap();
        assert_eq!(p.slot_width(), 81);
        assert_eq!(p.slots_per_block(), 25);
        // The GLWE part is v1's.
        let v1 = Params::v1();
        assert_eq!(
            (
                p.glwe_dimension,
                p.polynomial_size,
                p.noise_bound_log2,
                p.delta_log
            ),
            (
                v1.glwe_dimension,
                v1.polynomial_size,
                v1.noise_bound_log2,
                v1.delta_log
            )
        );
        let wider = Params { q: p.q + 1, ..p };
        assert!(wider.validate().is_err());
        for known in Params::known() {
            assert_eq!(Params::of_version(known.version), Some(known));
        }
        assert_eq!(Params::of_version(3), None);
    }
}
