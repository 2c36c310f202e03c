"""A phase as a plain class: built with its options as keyword arguments, one
``process`` method; no base class, no declared options, no setup/teardown hooks."""

import pyarrow.compute as pc


class Shout:
    def __init__(self, column, suffix="!"):
        self.column, self.suffix = column, suffix

    def process(self, batch):
        i = batch.schema.get_field_index(self.column)
        loud = pc.binary_join_element_wise(pc.utf8_upper(batch.column(i)), self.suffix, "")
        return batch.set_column(i, self.column, loud)
