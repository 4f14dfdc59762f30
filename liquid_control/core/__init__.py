"""Core layer: the robot spec, the policy runtime and its backends. Imports numpy, onnx, onnxruntime only."""
