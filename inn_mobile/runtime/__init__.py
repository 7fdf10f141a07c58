"""Host loaders: open a bundle, let the native core fill a bucket's runtime files, run them."""
