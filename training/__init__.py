"""Training agents in BlockWorld: the scripted tree-chopping expert, behavioural cloning with DAgger, and the
model organism's recipe (`vptlens train expert-demos | bc`)."""
