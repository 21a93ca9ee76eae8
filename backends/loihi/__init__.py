"""loihi-sim backend: core mapping and design rules, bit-accurate simulator, energy."""
