"""Robot policies behind one interface (behaviour cloning, Diffusion Policy, an OpenVLA-style VLA, an
embedding-space planner). Arrive with the training issue; registered by name like envs."""
