"""The local web viewer (`vptlens serve PATH...`): runs and episodes, the episode player with attention, the SAE
feature browser, steering, and experiment reports."""
