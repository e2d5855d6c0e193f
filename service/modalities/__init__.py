"""One object per modality (image, text, audio): service/modalities/spec.py says what a modality is,
registry.py which are registered and in what order, and each other module defines one."""
