print("forkscope")
