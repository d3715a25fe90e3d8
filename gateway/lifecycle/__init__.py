"""Model lifecycle: each node's supervisor runs managed models' llama-servers on demand, within the device's memory."""
