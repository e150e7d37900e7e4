"""Nova embeddings on their own: one text query scored against two product photos.

Needs AWS credentials with access to Amazon Nova Multimodal Embeddings in us-east-1 and two
images ``red.jpg`` and ``blue.png`` in the working directory. The test suite runs it against
``crossmodal_search.testing.FakeBedrock`` installed as boto3's default session.
"""

from __future__ import annotations


def main() -> None:
    """Embed a text query and two images; print the images best match first."""
    # --8<-- [start:embeddings]
    from crossmodal_search import NovaEmbeddings

    nova = NovaEmbeddings(region_name="us-east-1", dimension=1024)  # or client=your_client
    query = nova.embed_text("red summer dress", purpose="GENERIC_RETRIEVAL")  # float32 (1024,)
    images = nova.embed_images(["red.jpg", "blue.png"], purpose="GENERIC_INDEX")  # (2, 1024)
    print((images @ query).argsort()[::-1])  # best match first: [0 1]
    # --8<-- [end:embeddings]


if __name__ == "__main__":
    main()
