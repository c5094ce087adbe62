"""The method's maths: diffusion forms, the temporal pyramid (stage plan, resampling, jumps),
stage-wise training targets and the stage-wise sampler. Imports nothing else of harness."""
