"""The networks a run is built from: backbones, text encoders, codecs (pixels, the tiny
autoencoder, pretrained VAEs), pretrained pipelines and execution options."""
