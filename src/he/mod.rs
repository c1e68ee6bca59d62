//! Encrypted matching core (packed GGSW x GLWE external product on tfhe::core_crypto).
