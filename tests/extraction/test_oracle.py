"""The oracle backend hands back the documents' gold triplets as extractor "oracle"."""
from warehouse.contracts import Document, Triplet
from extraction.oracle import OracleBackend


def test_oracle_returns_each_documents_gold():
    gold = Triplet("x", "Mara Quell", "works at", "Tessaly Labs", False, 0, 33, None, "gold-file")
    docs = [Document("a", "Mara Quell works at Tessaly Labs.", gold=[gold]), Document("b", "No facts.")]
    triplets, errors = OracleBackend().extract(docs)
    assert errors == []
    assert [(t.doc_id, t.subject, t.relation, t.object, t.extractor) for t in triplets] == [
        ("a", "Mara Quell", "works at", "Tessaly Labs", "oracle")]
    assert (triplets[0].char_start, triplets[0].char_end) == (0, 33)
