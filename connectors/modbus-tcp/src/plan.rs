//! The read planner: one property group's tags into as few Modbus read
//! requests as the protocol allows.
//!
//! Tags of one table whose items touch or overlap are read together, up to
//! 125 registers or 2000 bits per request. Gaps are never bridged: reading
//! registers no tag asked for can make a device answer "illegal data
//! address" for the whole request, losing the tags around the gap. Merging
//! is greedy in address order, which is optimal here because no tag is wider
//! than one request (the configuration refuses wider ones).

use crate::config::{Table, Tag};

/// One read request and the tags it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    pub table: Table,
    /// Zero-based protocol address of the first item.
    pub start: u16,
    /// Items (registers or bits) to read.
    pub count: u16,
    /// `(index of the tag in the group, offset of its first item in this read)`.
    pub tags: Vec<(usize, u16)>,
}

/// Plans the reads for `tags` (one property group).
pub fn plan(tags: &[Tag]) -> Vec<Read> {
    let mut order: Vec<usize> = (0..tags.len()).collect();
    order.sort_by_key(|&i| (tags[i].address.table, tags[i].address.offset, tags[i].size));
    let mut reads: Vec<Read> = Vec::new();
    // Item ranges as u32 so that an end of 65536 is representable.
    for i in order {
        let tag = &tags[i];
        let table = tag.address.table;
        let start = u32::from(tag.address.offset);
        let end = start + u32::from(tag.size);
        if let Some(read) = reads.last_mut() {
            let read_start = u32::from(read.start);
            let read_end = read_start + u32::from(read.count);
            let merged_end = read_end.max(end);
            if read.table == table
                && start <= read_end
                && merged_end - read_start <= u32::from(table.max_per_read())
            {
                if let (Ok(count), Ok(offset)) = (
                    u16::try_from(merged_end - read_start),
                    u16::try_from(start - read_start),
                ) {
                    read.count = count;
                    read.tags.push((i, offset));
                    continue;
                }
            }
        }
        reads.push(Read {
            table,
            start: tag.address.offset,
            count: tag.size,
            tags: vec![(i, 0)],
        });
    }
    reads
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse_address, Address};
    use crate::decode::{DstType, SrcType, Transform};

    fn tag(name: &str, address: &str, size: u16) -> Tag {
        let address: Address = parse_address(address).expect("address");
        Tag {
            name: name.into(),
            alias: name.into(),
            address,
            size,
            src: if address.table.is_bits() {
                SrcType::Bool
            } else {
                SrcType::Hexdump
            },
            transform: Transform::NoSwap,
            dst: DstType::String,
        }
    }

    fn summary(reads: &[Read]) -> Vec<(Table, u16, u16)> {
        reads.iter().map(|r| (r.table, r.start, r.count)).collect()
    }

    #[test]
    fn adjacent_and_overlapping_registers_share_a_read() {
        let tags = [
            tag("c", "40005", 2),
            tag("a", "40001", 2),
            tag("b", "40003", 2),
            tag("overlap", "40006", 1),
            tag("inside", "40002", 1),
        ];
        let reads = plan(&tags);
        assert_eq!(summary(&reads), [(Table::HoldingRegister, 0, 6)]);
        let mut offsets = reads[0].tags.clone();
        offsets.sort();
        assert_eq!(offsets, [(0, 4), (1, 0), (2, 2), (3, 5), (4, 1)]);
    }

    #[test]
    fn gaps_and_tables_split_reads() {
        let tags = [
            tag("a", "40001", 2),
            tag("gap", "40004", 1),
            tag("input", "30003", 2),
            tag("input2", "30001", 2),
            tag("coil", "00001", 1),
            tag("coil2", "00002", 1),
            tag("di", "10001", 1),
        ];
        assert_eq!(
            summary(&plan(&tags)),
            [
                (Table::Coil, 0, 2),
                (Table::DiscreteInput, 0, 1),
                (Table::InputRegister, 0, 4),
                (Table::HoldingRegister, 0, 2),
                (Table::HoldingRegister, 3, 1),
            ]
        );
    }

    #[test]
    fn reads_stop_at_the_protocol_limits() {
        // 130 adjacent registers: 125 in one read, the rest in another.
        let tags: Vec<Tag> = (0..65)
            .map(|i| tag(&format!("t{i}"), &format!("4{:04}", 1 + 2 * i), 2))
            .collect();
        let reads = plan(&tags);
        assert_eq!(
            summary(&reads),
            [
                (Table::HoldingRegister, 0, 124),
                (Table::HoldingRegister, 124, 6)
            ]
        );
        assert_eq!(reads.iter().map(|r| r.tags.len()).sum::<usize>(), 65);
        // One wide tag of 125 registers is a read of its own.
        let tags = [tag("a", "40001", 1), tag("wide", "40002", 125)];
        assert_eq!(
            summary(&plan(&tags)),
            [
                (Table::HoldingRegister, 0, 1),
                (Table::HoldingRegister, 1, 125)
            ]
        );
        // 2001 coils: 2000 and 1.
        let tags: Vec<Tag> = (0..2001)
            .map(|i| tag(&format!("c{i}"), &format!("0{:05}", i + 1), 1))
            .collect();
        assert_eq!(
            summary(&plan(&tags)),
            [(Table::Coil, 0, 2000), (Table::Coil, 2000, 1)]
        );
    }

    #[test]
    fn the_last_register_is_reachable() {
        let tags = [tag("a", "465535", 1), tag("b", "465536", 1)];
        assert_eq!(summary(&plan(&tags)), [(Table::HoldingRegister, 65534, 2)]);
        assert!(plan(&[]).is_empty());
    }
}
