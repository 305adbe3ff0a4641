"""Metrics of generated samples and of continual sequences; each module states its formula.

  similarity.py      mean pairwise cosine similarity between generated and real embeddings
  mmd.py             unbiased MMD^2 (polynomial / Gaussian kernel) and KID over subsets
  continual.py       plasticity, final average and forgetting from a metric matrix R[t, i]
  identity.py        identity accuracy of the miniature's classifier (open and closed set)
  extractors.py      the miniature's feature space: the identity evaluator's embedding
  face_identity.py   facenet-pytorch: MTCNN crop + InceptionResnetV1 embedding (paper profiles)
  clip_score.py      transformers CLIP: image-image similarity and image-text alignment (paper profiles)
"""
