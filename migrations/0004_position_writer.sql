-- Which writer's commit left each position where it is. A projector keeps the rows it wrote in
-- memory between batches (projector/src/cache.rs) and trusts them only while the position row
-- still carries its own token at the sequence it left: any other writer (a second projector, a
-- replay's schema swap) changes one or the other. A migration that changes read-model rows must
-- set this column to NULL, so that running projectors load those rows again.
ALTER TABLE projector_positions ADD COLUMN IF NOT EXISTS writer uuid;
