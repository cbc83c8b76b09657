"""DICOM networking: the C-STORE listener, result destinations (C-STORE SCU, STOW-RS), the dead-letter box."""
