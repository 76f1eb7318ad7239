"""The music-video pipeline: beat analysis, shot planning, and one run of clips."""
