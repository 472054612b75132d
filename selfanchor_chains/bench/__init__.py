"""Research tools beside the evaluation harness: decoding speed and throughput benchmarks, the llama.cpp row, the
RAG comparison harness and the knowledge-conflict set builder. They build on ``eval`` (one way: ``eval`` never
imports them)."""
