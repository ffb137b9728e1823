project = "lofn"
