//! qcow2 disk images: read the guest view, write fresh v3 images.
